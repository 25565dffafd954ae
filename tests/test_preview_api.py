"""The preview app's API (Starlette's TestClient, no browser) over a real two-shot episode: listing, detail with
check results, media served from inside the episode only, edits validated by the manifest's model, the token on
every write, and approvals bound to the package version the page showed. The browser test
(tests/browser/test_preview_app.py) plays, re-renders and publishes through the same app."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time

import m3u8
import pytest
from PIL import Image
from starlette.testclient import TestClient

from browser.preview_fixtures import TOKEN, PreviewEpisode, make_preview_episode, moderate_manifest
from microdrama_assets.analytics.event_store import DuckDBEventStore
from microdrama_assets.assets import ASSET_CHECKS
from microdrama_assets.media.hls import MEDIA_PLAYLIST
from microdrama_assets.partitions import shot_partitions
from microdrama_assets.preview import app as preview_app
from microdrama_assets.preview import create_app
from microdrama_assets.runner import EpisodeRunner
from microdrama_assets.resources import TrustSettings
from microdrama_assets.trust.release_gate import (ModerationVerdict, approvals, manifest_subject, package_version,
                                                  record_verdict)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNKNOWN_VERSION = "0123456789abcdef"
JOB_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def episode(tmp_path_factory) -> PreviewEpisode:
    return make_preview_episode(tmp_path_factory, "preview-api")


@pytest.fixture(scope="module")
def client(episode, tmp_path_factory):
    events = DuckDBEventStore(tmp_path_factory.mktemp("preview-events") / "events.duckdb")
    try:
        with TestClient(create_app(episode.data_root, episode.instance, TOKEN, events)) as client:
            yield client
    finally:
        events.close()


def _shot_edit(episode: PreviewEpisode, shot_id: str, **changes) -> dict:
    shot = episode.artifacts.manifest().shot(shot_id)
    edit = {"action": shot.action, "dialogue": [line.model_dump() for line in shot.dialogue]}
    return {**edit, **changes}


def test_lists_the_episode_ready_for_review_with_its_package_version(client, episode):
    response = client.get("/api/episodes")
    assert response.status_code == 200
    [listed] = response.json()["episodes"]
    manifest = episode.artifacts.manifest()
    assert listed["episode_id"] == episode.episode_id
    assert listed["title"] == manifest.title
    assert listed["shots"] == 2
    assert listed["state"] == "ready for review"
    assert listed["version"] == package_version(episode.artifacts)


def test_detail_has_every_check_result_and_plays_the_package(client, episode):
    detail = client.get(f"/api/episodes/{episode.episode_id}").json()
    assert [shot["id"] for shot in detail["shots"]] == ["s01", "s02"]
    shot_checks = {key.name for check in ASSET_CHECKS if check.partitions_def == shot_partitions
                   for key in check.check_keys}
    episode_checks = {key.name for check in ASSET_CHECKS if check.partitions_def != shot_partitions
                      for key in check.check_keys}
    for shot in detail["shots"]:
        assert {check["check"] for check in shot["checks"]} == shot_checks
        # Every shot check ran in the shot's render run and passed; the shot is current.
        assert all(check["status"] == "passed" and check["run_id"] for check in shot["checks"]), shot["checks"]
        assert shot["stale_stage"] is None
    by_name = {check["check"]: check for check in detail["checks"]}
    assert set(by_name) == episode_checks
    assert by_name["episode_mix_meets_loudness_targets"]["status"] == "passed"
    assert by_name["published_episode_plays"]["status"] == "not run"  # nothing is published yet
    assert detail["moderation_blockers"] == []
    assert detail["approval"] is None and detail["published"] is None

    player = detail["player"]
    assert player["kind"] == "package" and detail["version"] in player["url"]
    master = client.get(player["url"])
    assert master.status_code == 200
    assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert master.headers["cache-control"] == "no-cache"  # a re-render rewrites segments under the same names
    playlist = m3u8.loads(master.text)
    variant_url = f"/media/{episode.episode_id}/hls/{playlist.playlists[0].uri}"
    variant = m3u8.loads(client.get(variant_url).text)
    folder = variant_url.rsplit("/", 1)[0]
    init = client.get(f"{folder}/{variant.segment_map[0].uri}")
    segment = client.get(f"{folder}/{variant.segments[0].uri}")
    assert init.headers["content-type"] == "video/mp4" and init.content[4:8] == b"ftyp"
    assert segment.headers["content-type"] == "video/iso.segment"
    assert segment.content == (episode.artifacts.hls_dir / variant_url.split("/hls/")[1]).parent.joinpath(
        variant.segments[0].uri).read_bytes()
    subtitles = client.get(f"/media/{episode.episode_id}/hls/{playlist.media[-1].uri}")
    vtt_uri = m3u8.loads(subtitles.text).segments[0].uri
    subtitles_folder = playlist.media[-1].uri.rsplit("/", 1)[0]
    vtt = client.get(f"/media/{episode.episode_id}/hls/{subtitles_folder}/{vtt_uri}")
    assert vtt.headers["content-type"].startswith("text/vtt") and vtt.text.startswith("WEBVTT")


def test_contact_sheet_tiles_every_keyframe(client, episode):
    keyframes = {shot.id: len(episode.artifacts.shot(shot.id).keyframe_layout()["keyframes"])
                 for shot in episode.artifacts.manifest().shots}
    tile, gap = preview_app.CONTACT_SHEET_TILE, 6
    for query, count in (("", sum(keyframes.values())), ("?shot=s02", keyframes["s02"])):
        response = client.get(f"/api/episodes/{episode.episode_id}/contact-sheet.jpg{query}")
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(response.content)) as sheet:
            assert sheet.format == "JPEG"
            assert sheet.width == min(count, preview_app.CONTACT_SHEET_COLUMNS) * (tile + gap) + gap
    assert client.get(f"/api/episodes/{episode.episode_id}/contact-sheet.jpg?shot=s09").status_code == 404


def test_manifest_and_pages_are_served(client, episode):
    manifest = client.get(f"/api/episodes/{episode.episode_id}/manifest")
    assert manifest.json() == json.loads(episode.artifacts.manifest_path.read_text(encoding="utf-8"))
    page = client.get(f"/episodes/{episode.episode_id}")
    assert page.status_code == 200 and "/vendor/hls.min.js" in page.text and "player_events.js" in page.text
    assert client.get("/episodes/no-such-episode").status_code == 404
    assert client.get("/vendor/player_events.js").text.count("MicrodramaAnalytics") >= 1


@pytest.mark.parametrize("method, path, body", [
    ("PUT", "/api/episodes/{id}/shots/s02", {"action": "Felix pockets the locket.", "dialogue": []}),
    ("POST", "/api/episodes/{id}/render", {"shots": ["s02"]}),
    ("POST", "/api/episodes/{id}/approve", {"approved_by": "Ada", "version": UNKNOWN_VERSION}),
])
def test_every_write_needs_the_token(client, episode, method, path, body):
    url = path.format(id=episode.episode_id)
    manifest_before = episode.artifacts.manifest_path.read_bytes()
    missing = client.request(method, url, json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "token" in missing.json()["error"]
    for wrong in ({"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {TOKEN}"}):
        assert client.request(method, url, json=body, headers=wrong).status_code in (401, 403)
    assert client.request(method, url, json=body, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert episode.artifacts.manifest_path.read_bytes() == manifest_before
    assert client.get(f"/api/episodes/{episode.episode_id}").json()["job"] is None  # no job was queued


@pytest.mark.parametrize("changes, problem", [
    ({"dialogue": [{"speaker": "zed", "text": "Who are you?"}]}, "speaker 'zed' is not among the shot's characters"),
    ({"action": "   "}, "shot s02 action: String should have at least 1 character"),
    ({"action": "x" * 401}, "shot s02 action: String should have at most 400 characters"),
    ({"dialogue": [{"speaker": "{speaker}", "text": "y" * 281}]}, "dialogue.0.text: String should have at most 280"),
    ({"dialogue": [{"speaker": "{speaker}", "text": "Hi."}] * 5}, "dialogue: List should have at most 4 items"),
    ({"mood": "eerie"}, "mood: Extra inputs are not permitted"),
])
def test_edits_are_validated_by_the_manifest_model(client, episode, changes, problem):
    speaker = episode.artifacts.manifest().shot("s02").characters[0]
    body = json.loads(json.dumps(_shot_edit(episode, "s02", **changes)).replace("{speaker}", speaker))
    manifest_before = episode.artifacts.manifest_path.read_bytes()
    response = client.put(f"/api/episodes/{episode.episode_id}/shots/s02", json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    assert problem in response.json()["error"]
    assert episode.artifacts.manifest_path.read_bytes() == manifest_before


def test_an_edit_rewrites_the_manifest_and_only_that_shot_goes_stale(client, episode):
    url = f"/api/episodes/{episode.episode_id}/shots/s02"
    original = _shot_edit(episode, "s02")
    edited = {**original, "action": "  Felix hides the locket behind the espresso machine.  "}
    response = client.put(url, json=edited, headers=AUTH)
    assert response.status_code == 200 and response.json()["changed"]
    manifest = episode.artifacts.manifest()
    assert manifest.shot("s02").action == "Felix hides the locket behind the espresso machine."
    assert manifest.shot("s02").dialogue == episode.artifacts.manifest().shot("s02").dialogue
    detail = client.get(f"/api/episodes/{episode.episode_id}").json()
    assert {shot["id"]: shot["stale_stage"] for shot in detail["shots"]} == {"s01": None, "s02": "storyboard"}

    # Putting the action back makes the shot current again: the cache keys are the rendered ones.
    assert client.put(url, json=original, headers=AUTH).json()["changed"]
    assert client.put(url, json=original, headers=AUTH).json()["changed"] is False
    detail = client.get(f"/api/episodes/{episode.episode_id}").json()
    assert [shot["stale_stage"] for shot in detail["shots"]] == [None, None]


@pytest.mark.parametrize("path", [
    "/media/{id}/manifest.json",  # inside the episode, but not a served part
    "/media/{id}/request.json",
    "/media/{id}/hls/%2e%2e/manifest.json",
    "/media/{id}/hls/..%2f..%2f..%2fapprovals",
    "/media/{id}/hls/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc/passwd",
    "/media/{id}//etc/passwd",
    "/media/{id}/hls",  # a directory: no listing
    "/media/{id}/hls/",
    "/media/{id}/.hls.cache.json",
    "/media/%2e%2e/episodes/{id}/hls/master.m3u8",
    "/media/Not_An_Id/hls/master.m3u8",
    "/static/",
])
def test_nothing_outside_the_served_parts_is_served(client, episode, path):
    response = client.get(path.format(id=episode.episode_id))
    assert response.status_code == 404, (path, response.status_code, response.text[:200])


def test_a_link_out_of_the_episode_is_not_followed(client, episode, tmp_path):
    secret = tmp_path / "secret.m3u8"
    secret.write_text("#EXTM3U\n# not the episode's\n", encoding="utf-8")
    link = episode.artifacts.hls_dir / "outside.m3u8"
    link.symlink_to(secret)
    try:
        assert client.get(f"/media/{episode.episode_id}/hls/outside.m3u8").status_code == 404
    finally:
        link.unlink()


def test_approving_a_version_other_than_the_current_package_is_refused(client, episode):
    current = package_version(episode.artifacts)
    response = client.post(f"/api/episodes/{episode.episode_id}/approve", headers=AUTH,
                           json={"approved_by": "Ada", "version": UNKNOWN_VERSION})
    assert response.status_code == 409
    error = response.json()["error"]
    assert f"reviewed package is version {UNKNOWN_VERSION}" in error and f"the package now is {current}" in error
    assert approvals(episode.store, episode.episode_id) == []
    assert client.get(f"/api/episodes/{episode.episode_id}").json()["state"] == "ready for review"


def test_approval_is_refused_while_moderation_blocks_the_manifest(client, episode):
    record_verdict(episode.artifacts, ModerationVerdict("manifest", manifest_subject(episode.artifacts), False,
                                                        "hate: matched a slur", [],
                                                        TrustSettings().moderation_fingerprint()), actor="test")
    try:
        detail = client.get(f"/api/episodes/{episode.episode_id}").json()
        assert detail["moderation_blockers"] == ["moderation blocked the manifest: hate: matched a slur"]
        response = client.post(f"/api/episodes/{episode.episode_id}/approve", headers=AUTH,
                               json={"approved_by": "Ada", "version": detail["version"]})
        assert response.status_code == 409 and "moderation blocked the manifest" in response.json()["error"]
        assert approvals(episode.store, episode.episode_id) == []
    finally:
        moderate_manifest(episode.store, episode.episode_id)


def test_bad_render_and_approval_requests_name_the_problem(client, episode):
    render = f"/api/episodes/{episode.episode_id}/render"
    unknown = client.post(render, json={"shots": ["s09"]}, headers=AUTH)
    assert unknown.status_code == 404 and "no shot 's09'" in unknown.json()["error"]
    empty = client.post(render, json={"shots": []}, headers=AUTH)
    assert empty.status_code == 400 and "shots: List should have at least 1 item" in empty.json()["error"]
    not_json = client.post(render, content=b"{shots", headers={**AUTH, "Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    odd_version = client.post(f"/api/episodes/{episode.episode_id}/approve", headers=AUTH,
                              json={"approved_by": "Ada", "version": "../../etc"})
    assert odd_version.status_code == 400 and odd_version.json()["error"].startswith("version: String should match")
    nameless = client.post(f"/api/episodes/{episode.episode_id}/approve", headers=AUTH,
                           json={"approved_by": " ", "version": package_version(episode.artifacts)})
    assert nameless.status_code == 409 and "approver's name is empty" in nameless.json()["error"]
    assert client.get("/api/jobs/no-such-job").status_code == 404


def test_before_the_package_is_assembled_the_page_plays_the_draft_preview(tmp_path_factory):
    draft = make_preview_episode(tmp_path_factory, "preview-draft")
    shutil.rmtree(draft.artifacts.hls_dir)
    # The draft (made by the plan run) as it is while the full render runs: an EVENT playlist still growing.
    playlist = draft.artifacts.preview_dir / MEDIA_PLAYLIST
    playlist.write_text("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:EVENT\n"
                        "#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\nseg_000.m4s\n", encoding="utf-8")
    events = DuckDBEventStore(tmp_path_factory.mktemp("draft-events") / "events.duckdb")
    try:
        with TestClient(create_app(draft.data_root, draft.instance, TOKEN, events)) as client:
            detail = client.get(f"/api/episodes/{draft.episode_id}").json()
            assert (detail["state"], detail["version"]) == ("planned", None)
            assert detail["player"] == {"kind": "draft", "url": f"/media/{draft.episode_id}/preview/{MEDIA_PLAYLIST}",
                                        "poster": None}
            served = client.get(detail["player"]["url"])
            assert served.headers["content-type"] == "application/vnd.apple.mpegurl"
            assert served.text == playlist.read_text(encoding="utf-8")
            refused = client.post(f"/api/episodes/{draft.episode_id}/approve", headers=AUTH,
                                  json={"approved_by": "Ada", "version": UNKNOWN_VERSION})
            assert refused.status_code == 409 and "no assembled package to review yet" in refused.json()["error"]
    finally:
        events.close()


class _HeldRunner(EpisodeRunner):
    """The real runner, held at the start of a render until the test lets it go."""

    release = threading.Event()

    def render_and_assemble(self, episode_id: str, shot_ids: list[str]):
        assert self.release.wait(JOB_TIMEOUT_S), "the test never released the render"
        return super().render_and_assemble(episode_id, shot_ids)


def test_one_job_at_a_time_per_episode_and_nothing_changes_under_it(episode, tmp_path):
    events = DuckDBEventStore(tmp_path / "events.duckdb")
    app = create_app(episode.data_root, episode.instance, TOKEN, events,
                     runner_factory=lambda progress: _HeldRunner(episode.data_root, episode.instance,
                                                                 progress=progress))
    base = f"/api/episodes/{episode.episode_id}"
    try:
        with TestClient(app) as client:
            job = client.post(f"{base}/render", json={"shots": ["s01"]}, headers=AUTH)
            assert job.status_code == 202 and job.json()["state"] in ("queued", "running")
            assert client.get(base).json()["state"] == "rendering"
            for method, path, body in (("POST", "/render", {"shots": ["s02"]}),
                                       ("PUT", "/shots/s01", _shot_edit(episode, "s01", action="Felix waits.")),
                                       ("POST", "/approve", {"approved_by": "Ada",
                                                             "version": package_version(episode.artifacts)})):
                refused = client.request(method, base + path, json=body, headers=AUTH)
                assert refused.status_code == 409, (path, refused.text)
                assert "has a render job" in refused.json()["error"]
            _HeldRunner.release.set()
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while (finished := client.get(f"/api/jobs/{job.json()['id']}").json())["state"] in ("queued", "running"):
                assert time.monotonic() < deadline, finished
                time.sleep(0.2)
            # s01 is current: the runner checked its cache keys and started no Dagster run.
            assert finished["state"] == "succeeded", finished["message"]
            assert finished["runs"] == []
            assert "shot s01 is up to date (every stage a cache hit); not re-run" in finished["progress"]
            assert finished["result"]["version"] == package_version(episode.artifacts)
            assert client.get(base).json()["state"] == "ready for review"
    finally:
        _HeldRunner.release.set()
        events.close()


def test_hls_js_comes_from_a_file_or_the_pinned_cdn_never_through_the_server(episode, tmp_path, monkeypatch):
    events = DuckDBEventStore(tmp_path / "events.duckdb")
    try:
        monkeypatch.setattr(preview_app, "REPO_HLS_JS", tmp_path / "absent" / "hls.min.js")
        monkeypatch.delenv(preview_app.HLS_JS_ENV, raising=False)
        with TestClient(create_app(episode.data_root, episode.instance, TOKEN, events)) as client:
            redirect = client.get("/vendor/hls.min.js", follow_redirects=False)
            assert redirect.status_code == 307 and redirect.headers["location"] == preview_app.HLS_JS_CDN
        local = tmp_path / "hls.min.js"
        local.write_text("/* hls.js */", encoding="utf-8")
        monkeypatch.setenv(preview_app.HLS_JS_ENV, str(local))
        with TestClient(create_app(episode.data_root, episode.instance, TOKEN, events)) as client:
            served = client.get("/vendor/hls.min.js")
            assert served.text == "/* hls.js */" and served.headers["content-type"].startswith("text/javascript")
        with pytest.raises(preview_app.PreviewConfigError, match="does not exist"):
            create_app(episode.data_root, episode.instance, TOKEN, events, hls_js_path=tmp_path / "missing.js")
    finally:
        events.close()

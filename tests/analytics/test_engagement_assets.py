"""The analytics assets through Dagster: simulated viewers who leave one shot too often show up in
engagement_metrics, next_episode_suggestions names that shot, and the next episode planned with
``--learn-from`` gets the change."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from dagster import DagsterInstance, materialize

from conftest import build_manifest
from microdrama_assets.analytics.event_store import open_event_store
from microdrama_assets.analytics.simulator import simulate_sessions, store_sessions
from microdrama_assets.artifacts import EpisodeArtifacts
from microdrama_assets.assets import engagement_metrics, episode_manifest, next_episode_suggestions
from microdrama_assets.episodes import Presets, write_request
from microdrama_assets.media.planner import estimate_dialogue_s
from microdrama_assets.resources import AnalyticsSettings, ArtifactStoreResource, BackendSettings

from . import delivery_for

EPISODE = "watched"
WEAK_SHOT = "s04"


@pytest.fixture
def watched(tmp_path):
    """An episode's manifest and delivery manifest, and 400 simulated viewers, three times as likely to leave
    during s04."""
    store = ArtifactStoreResource(root=str(tmp_path / "data"))
    analytics = AnalyticsSettings(events=str(tmp_path / "data" / "analytics" / "events.duckdb"))
    episode = EpisodeArtifacts(store.store(), EPISODE)
    manifest = build_manifest(EPISODE, shot_seconds=(4.0, 5.0, 5.0, 6.0, 5.0, 4.0))
    episode.store.write_text(episode.manifest_path, manifest.model_dump_json(indent=2))
    delivery = delivery_for(manifest)
    episode.store.write_json(episode.delivery_json, delivery)
    events = open_event_store(analytics.events)
    try:
        store_sessions(simulate_sessions(delivery, 400, seed=5, drop_multipliers={WEAK_SHOT: 3.0}), events)
    finally:
        events.close()
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", [EPISODE])
    return store, episode, instance, analytics


def test_the_shot_viewers_leave_is_measured_and_named_for_the_next_episode(watched):
    store, episode, instance, analytics = watched
    result = materialize([engagement_metrics, next_episode_suggestions], partition_key=EPISODE, instance=instance,
                         resources={"store": store, "analytics": analytics})
    metrics = result.asset_materializations_for_node("engagement_metrics")[0].metadata
    assert metrics["sessions"].value == 400 and metrics["data_source"].value == "simulated"
    assert metrics["retention_curve"].value.startswith("![retention curve](data:image/png;base64,")
    report = json.loads(episode.engagement_json.read_text())
    drop_offs = {shot["shot_id"]: shot["drop_off"] for shot in report["shots"]}
    assert max(drop_offs, key=drop_offs.get) == WEAK_SHOT
    assert episode.retention_png.read_bytes().startswith(b"\x89PNG")

    suggestions = json.loads(episode.suggestions_json.read_text())
    top = suggestions["suggestions"][0]
    assert top["shot_id"] == WEAK_SHOT and top["kind"] in ("shorten_shot", "rehook_shot")
    weak_beat = episode.manifest().shot(WEAK_SHOT).beat.value
    assert weak_beat in suggestions["planner_guidance"]["beats"]


def test_the_next_episode_is_planned_with_the_guidance(watched):
    store, episode, instance, _ = watched
    # What next_episode_suggestions writes when viewers leave late in the escalation and the episode runs long.
    guidance = {"schema_version": 1, "hook_first_line": False, "target_duration_s": 24.0,
                "beats": {"escalation": {"max_duration_s": 2.5, "rehook": True, "open_with_dialogue": False}},
                "reasons": ["shorten the escalation", "a shorter episode"]}
    episode.store.write_json(episode.suggestions_json, {"episode_id": EPISODE, "suggestions": [],
                                                        "planner_guidance": guidance})
    write_request(store.store(), "next", "A barista discovers a mysterious locket that signals danger.", 6, 1,
                  source="test", duration_s=36.0, presets=Presets(learn_from=EPISODE))
    instance.add_dynamic_partitions("episodes", ["next"])
    result = materialize([episode_manifest], partition_key="next", instance=instance,
                         resources={"store": store, "backends": BackendSettings()})
    applied = result.asset_materializations_for_node("episode_manifest")[0].metadata["guidance"].value
    assert f"from {EPISODE}: target 24.0s" in applied and "left to the planner: escalation: re-hook" in applied
    planned = EpisodeArtifacts(store.store(), "next").manifest()
    assert planned.duration_s < 30.0
    [escalation] = [shot for shot in planned.shots if shot.beat.value == "escalation"]
    assert escalation.duration_s <= max(2.5, estimate_dialogue_s(escalation.dialogue, planned.characters)) + 0.01


def test_learning_from_an_episode_without_suggestions_is_refused(tmp_path):
    cli = subprocess.run([sys.executable, "-m", "microdrama_assets.cli", "episode", "A quiet logline.",
                          "--learn-from", "never-watched"], capture_output=True, text=True, cwd=tmp_path,
                         env={"MICRODRAMA_DATA": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"})
    assert cli.returncode == 2 and "never-watched has no next_episode_suggestions" in cli.stderr, cli.stderr


def _cli(*args: str, cwd, data) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "microdrama_assets.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "MICRODRAMA_DATA": str(data), "DAGSTER_HOME": str(cwd / "dh")},
                          timeout=120)


def test_the_cli_simulates_collects_and_reports_engagement(watched, tmp_path):
    store, episode, _, _ = watched
    data = store.root
    # Straight into the event store, then served by a collector and posted to it.
    simulated = _cli("simulate-viewers", EPISODE, "--viewers", "40", "--seed", "2", cwd=tmp_path, data=data)
    assert simulated.returncode == 0 and "40 simulated sessions" in simulated.stdout, simulated.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    collector = subprocess.Popen([sys.executable, "-m", "microdrama_assets.cli", "collect", "--port", str(port)],
                                 cwd=tmp_path, env={**os.environ, "MICRODRAMA_DATA": str(data)},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        endpoint = f"http://127.0.0.1:{port}/api/events"
        for _ in range(100):  # until it listens
            posted = _cli("simulate-viewers", EPISODE, "--viewers", "10", "--seed", "3", "--endpoint", endpoint,
                          cwd=tmp_path, data=data)
            if posted.returncode == 0:
                break
            time.sleep(0.2)
        assert posted.returncode == 0 and "10 simulated sessions" in posted.stdout, posted.stderr
    finally:
        collector.terminate()
        collector.wait(timeout=30)
    report = _cli("engagement", EPISODE, cwd=tmp_path, data=data)
    assert report.returncode == 0, report.stderr
    assert "450 sessions (simulated)" in report.stdout  # the fixture's 400, then 40 and 10
    assert json.loads(episode.engagement_json.read_text())["sessions"] == 450

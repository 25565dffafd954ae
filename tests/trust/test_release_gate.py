"""Trust before publish, through the asset graph: moderation blocks a logline and a keyframe, nothing is published
without an approval of exactly the package being published, the published files carry C2PA Content Credentials
that validate, keyframes carry a watermark that decodes back, and the audit log records all of it."""

from __future__ import annotations

import json
import subprocess
import sys

import os

import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context

from microdrama_assets.artifacts import EpisodeArtifacts, read_gray, read_rgb
from microdrama_assets.assets.common import png_bytes
from microdrama_assets.definitions import make_definitions
from microdrama_assets.audit import AuditLog, query_audit
from microdrama_assets.episodes import Presets
from microdrama_assets.media.watermark import verify_watermark
from microdrama_assets.partitions import shot_partition_key
from microdrama_assets.resources import ArtifactStoreResource, TrustSettings
from microdrama_assets.runner import EpisodeRunner, PipelineFailed
from microdrama_assets.sensors import approval_sensor
from microdrama_assets.trust.provenance import prompt_sha256, read_provenance, sidecar_path
from microdrama_assets.trust.release_gate import ApprovalError, approve, package_version

from conftest import sample_loglines
from .conftest import make_test_signing

EPISODE = "gate-test"
BLOCKED_LOGLINE = "A chemist shows his students how to build a pipe bomb in the school lab."


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    return make_test_signing(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def assembled(tmp_path_factory, signing):
    """A two-shot episode with the visible label, assembled on an instance whose trust settings sign with a
    throwaway identity; not yet approved."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MICRODRAMA_C2PA_CERT", str(signing.identity.cert_chain))
        env.setenv("MICRODRAMA_C2PA_KEY", str(signing.identity.private_key))
        data = tmp_path_factory.mktemp("data")
        runner = EpisodeRunner(data, DagsterInstance.ephemeral())
        runner.make_episode(EPISODE, sample_loglines()[0], shots=2, seed=3, duration_s=4.0,
                            presets=Presets(ai_label=True))
        yield runner, EpisodeArtifacts(runner.store, EPISODE)


def _runs(runner, job_name):
    return [run for run in runner.instance.get_runs() if run.job_name == job_name]


def test_a_blocked_logline_stops_the_plan_naming_where_and_the_rule(tmp_path):
    runner = EpisodeRunner(tmp_path / "data", DagsterInstance.ephemeral())
    with pytest.raises(PipelineFailed, match=r"episode_manifest_passes_moderation: .*logline: weapons_instructions"):
        runner.make_episode("blocked", BLOCKED_LOGLINE, shots=2, seed=0, duration_s=4.0)
    assert runner.instance.get_latest_materialization_event(AssetKey("character_bundles")) is None
    verdict = json.loads((runner.store.episode_dir("blocked") / "moderation" / "manifest.json").read_text())
    assert not verdict["passed"] and verdict["violations"][0]["where"] == "logline"
    # The CLI refuses it before anything runs, with the rule in its one-line error.
    cli = subprocess.run([sys.executable, "-m", "microdrama_assets.cli", "episode", BLOCKED_LOGLINE],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "MICRODRAMA_DATA": str(tmp_path / "cli")})
    assert cli.returncode == 2 and "weapons_instructions" in cli.stderr, cli.stderr
    assert not (tmp_path / "cli" / "episodes").exists()


def test_publishing_is_refused_until_a_person_approves_this_package(assembled):
    runner, episode = assembled
    with pytest.raises(PipelineFailed, match="is not approved; review it and run `microdrama approve gate-test`"):
        runner.publish(EPISODE)
    assert not (episode.store.root / "published" / "episodes" / EPISODE).exists()
    version = package_version(episode)
    approval = approve(episode, "Ada Reviewer", "cli", reviewed_version=version, note="first cut")
    assert approval.version == version
    master_url = runner.publish(EPISODE)
    published = episode.store.root / "published" / "episodes" / EPISODE
    assert master_url.endswith(f"episodes/{EPISODE}/master.m3u8")
    assert json.loads((published / "delivery.json").read_text())["version"] == version
    [event] = runner.instance.fetch_materializations(AssetKey("published_episode"), limit=1).records
    metadata = event.asset_materialization.metadata
    assert metadata["approved_by"].value == "Ada Reviewer" and "| keyframes | embedded |" in metadata["audit"].value


def test_an_approval_of_an_older_package_does_not_publish_a_newer_one(assembled):
    runner, episode = assembled
    approved = package_version(episode)
    approve(episode, "Ada Reviewer", "cli")
    original = episode.captions_vtt.read_bytes()
    try:
        # The package changes after it was approved (here its captions file).
        episode.captions_vtt.write_bytes(original.replace(b"WEBVTT", b"WEBVTT\n\nNOTE changed after review", 1))
        changed = package_version(episode)
        assert changed != approved
        with pytest.raises(PipelineFailed, match=f"package version {changed} is not approved .approved: {approved}"):
            runner.publish(EPISODE)
        with pytest.raises(ApprovalError, match=f"reviewed package is version {approved}, the package now is {changed}"):
            approve(episode, "Ada Reviewer", "preview", reviewed_version=approved)
        # The sensor acts on the approval only while it matches the package.
        context = build_sensor_context(instance=runner.instance,
                                       resources={"store": ArtifactStoreResource(root=str(episode.store.root))})
        assert approval_sensor(context).run_requests == []
    finally:
        episode.captions_vtt.write_bytes(original)
    fresh = build_sensor_context(instance=runner.instance,
                                 resources={"store": ArtifactStoreResource(root=str(episode.store.root))})
    [request] = approval_sensor(fresh).run_requests
    assert request.partition_key == EPISODE and request.run_key == f"publish:{EPISODE}.{approved}"
    refusals = [e for e in AuditLog(episode.store, EPISODE).events() if e["kind"] == "publish_refused"]
    assert refusals and refusals[-1]["content_hash"] != approved


def test_a_keyframe_showing_a_bare_figure_fails_its_check_and_blocks_publishing(assembled, tmp_path):
    runner, episode = assembled
    shot = episode.shot("s01")
    entry = shot.keyframe_layout()["keyframes"][0]
    figure = entry["characters"][0]
    keyframe_path = shot.keyframe_path(entry["index"])
    original, stamp = keyframe_path.read_bytes(), keyframe_path.stat()
    # The keyframe as if the renderer had drawn the figure bare: its whole silhouette in a skin tone.
    bare = read_rgb(keyframe_path).copy()
    bare[read_gray(shot.keyframe_mask_path(entry["index"], figure)) > 127] = (224, 172, 140)
    policy = tmp_path / "strict.json"  # the default policy, with suspected nudity blocking instead of flagging
    policy.write_text(json.dumps({"extends": "default", "categories": [{"id": "nudity_suspected", "action": "block"}]}))

    def check_keyframes(policy_file: str):
        """The moderation check alone (running the keyframes step would restore them from the cache)."""
        defs = make_definitions(data_root=str(episode.store.root))
        job = defs.resolve_job_def("render_shot")
        result = job.execute_in_process(
            instance=runner.instance, partition_key=shot_partition_key(EPISODE, "s01"),
            op_selection=["keyframes_keyframes_pass_moderation"], raise_on_error=False,
            resources={"trust": TrustSettings(moderation_policy=policy_file)})
        [evaluation] = result.get_asset_check_evaluations()
        return evaluation

    try:
        keyframe_path.write_bytes(png_bytes(bare))
        evaluation = check_keyframes(str(policy))
        assert not evaluation.passed
        assert f"shot s01 keyframe {entry['index']}: nudity_suspected" in evaluation.metadata["problems"].value
        with pytest.raises(ApprovalError, match="moderation blocked shot s01's keyframes: 1 blocking"):
            approve(episode, "Ada Reviewer", "cli")
        # The publish step judges under the policy it is configured with: a verdict made under another one is
        # stale, so it is refused either way.
        with pytest.raises(PipelineFailed, match="shot s01's keyframes changed .or the moderation policy did."):
            runner.publish(EPISODE)
    finally:  # the keyframe as it was, to the cache's record (size and modification time) too
        keyframe_path.write_bytes(original)
        os.utime(keyframe_path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert check_keyframes("").passed


def test_published_files_carry_content_credentials_that_validate(assembled, signing):
    runner, episode = assembled
    approve(episode, "Ada Reviewer", "cli")
    runner.publish(EPISODE)
    version_dir = episode.store.root / "published" / "episodes" / EPISODE / "v" / package_version(episode)
    delivery = json.loads((version_dir / "delivery.json").read_text())
    provenance = delivery["provenance"]
    assert provenance["ai_generated"] and provenance["visible_label"]
    assert provenance["invisible_watermark"] == ["keyframes", "poster.jpg"]
    assert {"master.mp4", "poster.jpg"} <= set(provenance["content_credentials"])
    manifest = episode.manifest()
    for name in ("master.mp4", "poster.jpg"):
        report = read_provenance(version_dir / name, signing.root_pem)
        assert report.trusted, (name, report.failures)
        assert report.digital_source_type.endswith("compositeSynthetic")
        assert prompt_sha256(manifest.logline) in report.generation.prompt_sha256
        stages = {(m.stage, m.backend) for m in report.generation.models}
        assert {("keyframes", "embedded"), ("dialogue_audio", "embedded"), ("episode_manifest", "embedded")} <= stages
        assert set(report.generation.seeds) >= {shot.seed for shot in manifest.shots}
        assert "Visible 'AI-generated' label" in json.dumps(report.actions)
    init = version_dir / "hls" / "video" / "h264" / "360p" / "init.mp4"
    assert sidecar_path(init).relative_to(version_dir).as_posix() in provenance["content_credentials"]
    assert read_provenance(init, signing.root_pem).trusted


def test_keyframes_and_the_poster_carry_the_episode_watermark(assembled):
    _, episode = assembled
    for shot in episode.manifest().shots:
        for image in episode.shot(shot.id).keyframe_images():
            assert verify_watermark(image, EPISODE)
            assert not verify_watermark(image, "another-episode")
    poster = read_rgb(episode.poster)
    assert verify_watermark(poster, EPISODE)


def test_the_audit_log_records_every_step_and_answers_sql(assembled, tmp_path):
    runner, episode = assembled
    log = AuditLog(episode.store, EPISODE)
    frame = log.frame()
    assert {"request", "render", "moderation", "approval", "publish", "publish_refused"} <= set(frame["kind"])
    renders = query_audit(frame, "select asset, partition, backend from audit where kind = 'render' "
                                 "order by asset, partition")
    assert {("keyframes", "s01"), ("keyframes", "s02"), ("episode_manifest", EPISODE)} <= set(
        zip(renders["asset"], renders["partition"]))
    assert set(renders["backend"]) == {"embedded"}
    approvals = query_audit(frame, "select distinct actor, content_hash from audit where kind = 'approval'")
    assert list(approvals["actor"]) == ["Ada Reviewer"]
    assert log.verify() == []
    # An event edited after the fact is reported; the log is append-only.
    first = sorted(log.directory.glob("*.json"))[0]
    event = json.loads(first.read_text())
    first.write_text(json.dumps({**event, "actor": "someone else"}))
    assert log.verify() == [f"event {event['event_id']} was altered after it was written"]
    first.write_text(json.dumps(event))


def test_a_blocked_edit_renders_nothing_however_often_it_is_tried(assembled):
    runner, episode = assembled
    original = episode.manifest_path.read_bytes()
    manifest = json.loads(original)
    manifest["shots"][1]["action"] = "He explains how to build a pipe bomb from what is in the kitchen."
    episode.manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    renders_before = len([run for run in runner.instance.get_runs() if run.job_name == "render_shot"])
    try:
        for _ in range(2):  # the second attempt meets the blocked verdict, not a fresh check
            with pytest.raises(PipelineFailed, match=r"shot s02 action: weapons_instructions"):
                runner.render_and_assemble(EPISODE, ["s02"])
        renders = [run for run in runner.instance.get_runs() if run.job_name == "render_shot"]
        assert len(renders) == renders_before
    finally:
        episode.manifest_path.write_bytes(original)
    verdict = json.loads((episode.directory / "moderation" / "manifest.json").read_text())
    assert not verdict["passed"]  # until the restored manifest is moderated again, on the next render

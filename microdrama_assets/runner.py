"""Drives the asset graph for one episode on a Dagster instance: plan, render every shot (one run per shot
partition), assemble. The CLI and the benchmark use it; sensors do the same through the daemon.

Shot runs are independent, so with a persistent instance they run in parallel worker processes: motion and
compositing are single-threaded Python/NumPy work that overlaps well with the encoders' own threads.

Before starting runs, the runner checks each shot's stages against their cache keys (cache.py): a shot whose
every artifact is already its current key's output gets no run, and neither does the assembly when nothing
changed and the published episode is current, so an unchanged re-render costs key checks, not Dagster runs.

A manifest edited since its moderation (a line or an action changed by hand or on the preview page) is moderated
again before any shot renders, and a blocked one renders nothing. Publishing is behind the release gate
(trust/release_gate.py): an assembled package is published when a person has approved exactly that package;
otherwise the runner says it is ready for review."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from dagster import DagsterInstance, ExecuteInProcessResult

from .artifacts import EpisodeArtifacts
from .assets import episode_manifest_passes_moderation, keyframes_pass_moderation, published_episode
from .cache import stale_episode_stage, stale_shot_stage
from .definitions import make_definitions
from .episodes import Presets, write_request
from .jobs import (analyze_engagement_job, assemble_episode_job, plan_episode_job, publish_episode_job,
                   render_shot_job)
from .media.hls import MASTER_PLAYLIST
from .media.manifest import EpisodeManifest
from .partitions import episode_partitions, shot_partition_key, shot_slot_partitions
from .resources import ArtifactStoreResource
from .trust.release_gate import approval_for, moderation_subjects, package_version, verdict_state

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class PipelineFailed(RuntimeError):
    """A run failed; the message is the failing step and its error."""


def instance_for(project_dir: Path) -> DagsterInstance:
    """The persistent instance: DAGSTER_HOME if set, else ``.dagster_home`` in the project directory."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str((project_dir / ".dagster_home").resolve())
        os.environ["DAGSTER_HOME"] = home
    Path(home).mkdir(parents=True, exist_ok=True)
    config = Path(home) / "dagster.yaml"
    if not config.exists():
        config.write_text("# SQLite storage in this directory (Dagster's default).\ntelemetry:\n  enabled: false\n",
                          encoding="utf-8")
    return DagsterInstance.get()


def _execute(defs, instance: DagsterInstance, job_name: str, partition_key, label: str,
             op_selection: list[str] | None = None) -> ExecuteInProcessResult:
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, partition_key=partition_key, run_config=QUIET_LOGS, raise_on_error=False,
        op_selection=op_selection)
    # A failed check names its problems; a blocking one also fails its step, whose message says only that.
    failed_checks = [f"check {e.check_name}: {e.metadata['problems'].value}"
                     for e in result.get_asset_check_evaluations() if not e.passed]
    if failed_checks:
        raise PipelineFailed(f"{label} failed (run {result.run_id}): " + "; ".join(failed_checks))
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        detail = ("; ".join(f"{e.step_key}: {_root_message(e.step_failure_data.error)}" for e in failures)
                  or "run failed")
        raise PipelineFailed(f"{label} failed (run {result.run_id}): {detail}")
    return result


def _root_message(error) -> str:
    """The message of the exception behind a step failure: Dagster wraps an unexpected error in "Error occurred
    while executing op ...", whose cause says what went wrong."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip().splitlines()[-1]


def _render_shot_in_worker(data_root: str, encode_preset: str | None, video_codecs: list[str] | None,
                           episode_id: str, shot_id: str) -> float:
    """Runs in a worker process against the same persistent instance (DAGSTER_HOME is inherited)."""
    started = time.perf_counter()
    _execute(make_definitions(data_root=data_root, encode_preset=encode_preset, video_codecs=video_codecs),
             DagsterInstance.get(),
             render_shot_job.name, shot_partition_key(episode_id, shot_id), f"shot {shot_id}")
    return time.perf_counter() - started


class EpisodeRunner:
    def __init__(self, data_root: str | Path, instance: DagsterInstance, encode_preset: str | None = None,
                 workers: int = 1, progress: Callable[[str], None] = lambda message: None,
                 video_codecs: list[str] | None = None, publish_to: str | None = None):
        # MICRODRAMA_ARTIFACTS=s3://... keeps the artifacts in S3; data_root is then the local working copy.
        self.data_root = str(Path(data_root).expanduser().resolve())
        self.store = ArtifactStoreResource(root=self.data_root).store()
        self.encode_preset, self.video_codecs = encode_preset, video_codecs
        self.defs = make_definitions(data_root=self.data_root, encode_preset=encode_preset,
                                     video_codecs=video_codecs, publish_to=publish_to)
        self.instance, self.progress = instance, progress
        # An ephemeral instance lives in this process only, so its runs cannot be shared with workers.
        self.workers = 1 if instance.is_ephemeral else max(1, workers)

    def _run(self, job_name: str, partition_key, label: str, op_selection: list[str] | None = None
             ) -> ExecuteInProcessResult:
        started = time.perf_counter()
        result = _execute(self.defs, self.instance, job_name, partition_key, label, op_selection)
        self.progress(f"{label} done in {time.perf_counter() - started:.1f}s")
        return result

    def make_episode(self, episode_id: str, logline: str, shots: int, seed: int, duration_s: float | None = None,
                     presets: Presets = Presets()) -> Path:
        write_request(self.store, episode_id, logline, shots, seed, source="cli", duration_s=duration_s,
                      presets=presets)
        self._ensure_partitions(episode_partitions.name, [episode_id])
        self._run(plan_episode_job.name, episode_id, f"plan {episode_id}")
        manifest = EpisodeArtifacts(self.store, episode_id).manifest()
        self.progress(f"planned '{manifest.title}': {len(manifest.shots)} shots, {manifest.duration_s:.1f}s")
        return self.render_and_assemble(episode_id, manifest.shot_ids)

    def render_and_assemble(self, episode_id: str, shot_ids: list[str]) -> Path:
        episode = EpisodeArtifacts(self.store, episode_id)
        manifest = episode.manifest()
        shot_ids = list(dict.fromkeys(shot_ids))  # the same shot twice would race itself
        for shot_id in shot_ids:
            manifest.shot(shot_id)  # unknown shots fail here, before anything runs
        # The data may outlive the instance (a new DAGSTER_HOME, another machine): register its partitions.
        self._ensure_partitions(episode_partitions.name, [episode_id])
        self._ensure_partitions(shot_slot_partitions.name, manifest.shot_ids)
        self._moderate_stale_subjects(episode, manifest)
        stale_shots = self._stale_shots(episode, manifest, shot_ids)
        self._render_shots(episode_id, stale_shots)
        playlist = episode.hls_dir / MASTER_PLAYLIST
        stage = "shots" if stale_shots else self._stale_episode_stage(episode, manifest)
        if stage is None:
            self.progress(f"{episode_id}: published and up to date; nothing to assemble")
            return playlist
        if stage != "published":
            if not stale_shots:
                self.progress(f"{episode_id}: {stage} is out of date")
            self._run(assemble_episode_job.name, episode_id, f"assemble {episode_id}")
        version = package_version(episode)
        if approval_for(self.store, episode_id, version) is None:
            self.progress(f"{episode_id}: package version {version} is ready for review; publish it with "
                          f"`microdrama approve {episode_id}` or from the preview page (`microdrama preview`)")
        elif stage == "published" or self._stale_episode_stage(episode, manifest) == "published":
            self.publish(episode_id)
        else:
            self.progress(f"{episode_id}: version {version} is approved and published already")
        return playlist

    def analyze(self, episode_id: str) -> None:
        """Engagement by shot from the stored playback events, then the suggestions for the next episode."""
        self._ensure_partitions(episode_partitions.name, [episode_id])
        self._run(analyze_engagement_job.name, episode_id, f"analyze {episode_id}")

    def publish(self, episode_id: str) -> str:
        """Run the publish step (refused unless moderation cleared the episode and its current package is
        approved); returns the published master playlist's URL."""
        published = self._run(publish_episode_job.name, episode_id, f"publish {episode_id}")
        [event] = [e for e in published.get_asset_materialization_events() if e.asset_key == published_episode.key]
        master_url = event.materialization.metadata["master_url"].value
        self.progress(f"published: {master_url}")
        return master_url

    def _moderate_stale_subjects(self, episode: EpisodeArtifacts, manifest: EpisodeManifest) -> None:
        """Moderation is run again, alone, on what changed since it last judged: a manifest edited by hand or on
        the preview page (re-running the plan would replace the edit), and the keyframes of shots already
        rendered, when the policy or a classifier changed. A blocked manifest renders nothing."""
        fingerprint = self.defs.resources["trust"].moderation_fingerprint()
        for scope, _, subject in moderation_subjects(manifest):
            shot_id = None if scope == "manifest" else scope.removeprefix("keyframes-")
            if shot_id is not None and not self.store.available(episode.shot(shot_id).keyframe_layout_path):
                continue  # not rendered yet: the shot's own run checks its keyframes
            state, summary = verdict_state(episode, scope, subject(episode), fingerprint)
            if state == "blocked" and shot_id is None:
                raise PipelineFailed(f"{episode.episode_id}: moderation blocked the manifest, nothing is rendered: "
                                     f"{summary}; edit it and re-render")
            if state in ("unchecked", "stale") and shot_id is None:  # a blocked result fails this run
                self._run(plan_episode_job.name, episode.episode_id, f"moderate {episode.episode_id}",
                          op_selection=[episode_manifest_passes_moderation.node_def.name])
            elif state in ("unchecked", "stale"):
                self._run(render_shot_job.name, shot_partition_key(episode.episode_id, shot_id), f"moderate {shot_id}",
                          op_selection=[keyframes_pass_moderation.node_def.name])

    def _stale_shots(self, episode: EpisodeArtifacts, manifest: EpisodeManifest, shot_ids: list[str]) -> list[str]:
        """The shots with a stage whose artifact is not its current key's output (a cheap check of records)."""
        resources = self.defs.resources
        stale = []
        for shot_id in shot_ids:
            stage = stale_shot_stage(episode, manifest, manifest.shot(shot_id), resources["backends"],
                                     resources["encode"])
            if stage is None:
                self.progress(f"shot {shot_id} is up to date (every stage a cache hit); not re-run")
            else:
                self.progress(f"shot {shot_id}: {stage} and what follows it are out of date")
                stale.append(shot_id)
        return stale

    def _stale_episode_stage(self, episode: EpisodeArtifacts, manifest: EpisodeManifest) -> str | None:
        publish = self.defs.resources["publish"]
        return stale_episode_stage(episode, manifest, self.defs.resources["encode"], publish.object_store(),
                                   publish.keep_versions, self.defs.resources["trust"].signer())

    def _ensure_partitions(self, partitions_name: str, keys: list[str]) -> None:
        known = set(self.instance.get_dynamic_partitions(partitions_name))
        missing = [key for key in keys if key not in known]
        if missing:
            self.instance.add_dynamic_partitions(partitions_name, missing)

    def _render_shots(self, episode_id: str, shot_ids: list[str]) -> None:
        if not shot_ids:
            return
        if self.workers == 1 or len(shot_ids) == 1:
            for number, shot_id in enumerate(shot_ids, 1):
                self._run(render_shot_job.name, shot_partition_key(episode_id, shot_id),
                          f"shot {shot_id} ({number}/{len(shot_ids)})")
            return
        with ProcessPoolExecutor(max_workers=min(self.workers, len(shot_ids)), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_render_shot_in_worker, self.data_root, self.encode_preset,
                                   self.video_codecs, episode_id, shot_id): shot_id
                       for shot_id in shot_ids}
            for done, future in enumerate(as_completed(futures), 1):
                try:
                    seconds = future.result()
                except Exception:
                    # Report the failure now rather than after every other queued shot has rendered.
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                self.progress(f"shot {futures[future]} ({done}/{len(shot_ids)}) done in {seconds:.1f}s")

"""Drives the asset graph for one episode on a Dagster instance: plan, render every shot (one run per shot
partition), assemble. The CLI and the benchmark use it; sensors do the same through the daemon.

Shot runs are independent, so with a persistent instance they run in parallel worker processes: motion and
compositing are single-threaded Python/NumPy work that overlaps well with the encoders' own threads.

Before starting runs, the runner checks each shot's stages against their cache keys (cache.py): a shot whose
every artifact is already its current key's output gets no run, and neither does the assembly when nothing
changed and the published episode is current, so an unchanged re-render costs key checks, not Dagster runs."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from dagster import DagsterInstance, ExecuteInProcessResult

from .artifacts import EpisodeArtifacts
from .assets import published_episode
from .cache import stale_episode_stage, stale_shot_stage
from .definitions import make_definitions
from .episodes import Presets, write_request
from .jobs import assemble_episode_job, plan_episode_job, render_shot_job
from .media.hls import MASTER_PLAYLIST
from .media.manifest import EpisodeManifest
from .partitions import episode_partitions, shot_partition_key, shot_slot_partitions
from .resources import ArtifactStoreResource

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


def _execute(defs, instance: DagsterInstance, job_name: str, partition_key, label: str) -> ExecuteInProcessResult:
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, partition_key=partition_key, run_config=QUIET_LOGS, raise_on_error=False
    )
    # A failed check names its problems; a blocking one also fails its step, whose message says only that.
    failed_checks = [f"check {e.check_name}: {e.metadata['problems'].value}"
                     for e in result.get_asset_check_evaluations() if not e.passed]
    if failed_checks:
        raise PipelineFailed(f"{label} failed (run {result.run_id}): " + "; ".join(failed_checks))
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        detail = "; ".join(
            f"{e.step_key}: {e.step_failure_data.error.message.strip().splitlines()[-1]}" for e in failures
        ) or "run failed"
        raise PipelineFailed(f"{label} failed (run {result.run_id}): {detail}")
    return result


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

    def _run(self, job_name: str, partition_key, label: str) -> ExecuteInProcessResult:
        started = time.perf_counter()
        result = _execute(self.defs, self.instance, job_name, partition_key, label)
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
        stale_shots = self._stale_shots(episode, manifest, shot_ids)
        self._render_shots(episode_id, stale_shots)
        playlist = episode.hls_dir / MASTER_PLAYLIST
        if not stale_shots:
            stage = self._stale_episode_stage(episode, manifest)
            if stage is None:
                self.progress(f"{episode_id}: published and up to date; nothing to assemble")
                return playlist
            self.progress(f"{episode_id}: {stage} is out of date")
        assembled = self._run(assemble_episode_job.name, episode_id, f"assemble {episode_id}")
        for event in assembled.get_asset_materialization_events():
            if event.asset_key == published_episode.key:
                self.progress(f"published: {event.materialization.metadata['master_url'].value}")
        return playlist

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
                                   publish.keep_versions)

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

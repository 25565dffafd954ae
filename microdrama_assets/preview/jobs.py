"""Background jobs of the preview app: re-render shots, publish an approved package.

Both go through the asset graph (``EpisodeRunner``: Dagster runs on the instance), which takes seconds to
minutes, so a request only queues a job and the page polls its state. Jobs run one at a time on one worker thread:
the runs are CPU-bound and a creator's machine has few cores, and Dagster's ``execute_in_process`` works from a
thread. An episode has at most one job queued or running, so a render never races its own publish or a second
render of the same shots. Each job reports the Dagster runs it started, read back from the instance by the
episode's partition tags.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator, Literal

from dagster import DagsterInstance, RunsFilter

from ..artifacts import EpisodeArtifacts
from ..runner import EpisodeRunner
from ..trust.release_gate import package_version

log = logging.getLogger(__name__)

JobKind = Literal["render", "publish"]
JobState = Literal["queued", "running", "succeeded", "failed"]
ACTIVE_STATES = ("queued", "running")
RunnerFactory = Callable[[Callable[[str], None]], EpisodeRunner]

# Dagster's own run tags: a shot run is tagged with its episode dimension, an episode run with its partition.
_SHOT_RUN_EPISODE_TAG = "dagster/partition/episode"
_EPISODE_RUN_TAG = "dagster/partition"


class JobConflict(RuntimeError):
    """The episode already has a job queued or running."""


class UnknownJob(KeyError):
    """No job has that ID."""


@dataclass
class Job:
    """One background job and what it has reported so far."""

    id: str
    episode_id: str
    kind: JobKind
    shot_ids: list[str]
    state: JobState = "queued"
    message: str = "queued"
    progress: list[str] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    result: dict = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def to_dict(self) -> dict:
        return {"id": self.id, "episode_id": self.episode_id, "kind": self.kind, "shots": list(self.shot_ids),
                "state": self.state, "message": self.message, "progress": list(self.progress),
                "runs": [dict(run) for run in self.runs], "result": dict(self.result),
                "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at}


class JobQueue:
    """Queues render and publish jobs for episodes and runs them, one at a time, on a worker thread."""

    def __init__(self, runner_factory: RunnerFactory, instance: DagsterInstance):
        self._runner_factory = runner_factory
        self._instance = instance
        self._jobs: dict[str, Job] = {}
        self._latest: dict[str, str] = {}  # episode id -> its newest job's id
        self._lock = threading.RLock()  # re-entered when a job is queued inside while_idle
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview-job")

    def submit_render(self, episode_id: str, shot_ids: list[str]) -> dict:
        """Queue a re-render of ``shot_ids`` (the runner renders only what the cache says changed, then
        assembles). Raises JobConflict while the episode has another job."""
        return self._submit(episode_id, "render", shot_ids)

    def submit_publish(self, episode_id: str) -> dict:
        """Queue the publish job (the release gate refuses an unapproved package). Raises JobConflict while the
        episode has another job."""
        return self._submit(episode_id, "publish", [])

    @contextlib.contextmanager
    def while_idle(self, episode_id: str) -> Iterator[None]:
        """Change an episode's inputs (an edit, an approval) knowing no job of it runs meanwhile: no job of the
        episode may be active on entry (JobConflict), and none starts until the block ends (keep it short)."""
        with self._lock:
            self._refuse_if_busy(episode_id)
            yield

    def get(self, job_id: str) -> dict:
        with self._lock:
            if job_id not in self._jobs:
                raise UnknownJob(job_id)
            return self._jobs[job_id].to_dict()

    def latest(self, episode_id: str) -> dict | None:
        """The episode's newest job (active or finished), or None."""
        with self._lock:
            job_id = self._latest.get(episode_id)
            return self._jobs[job_id].to_dict() if job_id else None

    def busy(self, episode_id: str) -> bool:
        """Whether the episode has a job queued or running."""
        with self._lock:
            job_id = self._latest.get(episode_id)
            return job_id is not None and self._jobs[job_id].active

    def shutdown(self) -> None:
        """Wait for the running job; drop the queued ones."""
        self._worker.shutdown(wait=True, cancel_futures=True)

    # --- internals ----------------------------------------------------------------------------------------------
    def _refuse_if_busy(self, episode_id: str) -> None:
        current = self._latest.get(episode_id)
        if current is not None and self._jobs[current].active:
            job = self._jobs[current]
            raise JobConflict(f"episode {episode_id} has a {job.kind} job {job.state} ({job.id}); wait for it to "
                              f"finish")

    def _submit(self, episode_id: str, kind: JobKind, shot_ids: list[str]) -> dict:
        with self._lock:
            self._refuse_if_busy(episode_id)
            job = Job(uuid.uuid4().hex[:12], episode_id, kind, list(shot_ids))
            self._jobs[job.id] = job
            self._latest[episode_id] = job.id
            snapshot = job.to_dict()
        self._worker.submit(self._run, job)
        return snapshot

    def _update(self, job: Job, **changes) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(job, name, value)

    def _note(self, job: Job, message: str) -> None:
        """The runner's progress callback: it reports after each run, so the runs so far are read here too."""
        runs = self._runs_since(job)
        with self._lock:
            job.progress.append(message)
            job.message = message
            job.runs = runs

    def _run(self, job: Job) -> None:
        self._update(job, state="running", started_at=time.time(), message=f"{job.kind} started")
        try:
            runner = self._runner_factory(lambda message: self._note(job, message))
            if job.kind == "render":
                runner.render_and_assemble(job.episode_id, job.shot_ids)
                result = {"version": package_version(EpisodeArtifacts(runner.store, job.episode_id))}
                done = f"rendered; package version {result['version']}"
            else:
                master_url = runner.publish(job.episode_id)
                result = {"master_url": master_url}
                done = f"published: {master_url}"
        except Exception as exc:  # noqa: BLE001 - any failure ends the job; the page shows its message
            log.exception("preview %s job %s for %s failed", job.kind, job.id, job.episode_id)
            self._update(job, state="failed", message=str(exc) or type(exc).__name__, finished_at=time.time(),
                         runs=self._runs_since(job))
            return
        self._update(job, state="succeeded", message=done, result=result, finished_at=time.time(),
                     runs=self._runs_since(job))

    def _runs_since(self, job: Job) -> list[dict]:
        """The Dagster runs of the job's episode created since it started, oldest first."""
        created_after = datetime.fromtimestamp(job.started_at, tz=timezone.utc)
        records = [record for tag in (_SHOT_RUN_EPISODE_TAG, _EPISODE_RUN_TAG)
                   for record in self._instance.get_run_records(
                       filters=RunsFilter(tags={tag: job.episode_id}, created_after=created_after))]
        records.sort(key=lambda record: record.create_timestamp)
        return [{"run_id": record.dagster_run.run_id, "job": record.dagster_run.job_name,
                 "status": record.dagster_run.status.value,
                 "partition": record.dagster_run.tags.get(_EPISODE_RUN_TAG, "")} for record in records]

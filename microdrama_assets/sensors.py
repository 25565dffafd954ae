"""Sensors: new logline files start episodes; finished plans fan out into shot runs; finished shots assemble;
approvals publish."""

import hashlib
import json
from pathlib import Path

from dagster import (AssetKey, AssetRecordsFilter, ConfigurableResource, DagsterInstance, DagsterRunStatus,
                     DefaultSensorStatus, RunRequest, RunStatusSensorContext, SensorEvaluationContext, SensorResult,
                     SkipReason, run_status_sensor, sensor)
from pydantic import Field

from .artifacts import EpisodeArtifacts
from .episodes import BadRequest, Presets, clean_logline, parse_cast, write_request
from .jobs import assemble_episode_job, plan_episode_job, publish_episode_job, render_shot_job
from .partitions import episode_partitions, shot_partition_key
from .resources import ArtifactStoreResource
from .trust.release_gate import ApprovalError, approvals, package_version

LOGLINE_SUFFIX = ".txt"
MAX_LOGLINE_FILE_BYTES = 4096


class LoglineInbox(ConfigurableResource):
    """The folder the sensor watches: one ``<episode-id>.txt`` file per episode, its text the logline.
    Optional lines after the logline set options: ``shots: N``, ``seed: S``, ``duration: SECONDS``,
    ``caption_style: NAME``, ``lighting: MOOD``, ``cast: CARD, CARD``, ``series: NAME``, ``music: FILE``
    (an audio file in the same folder) and ``ai_label: yes|no`` (a visible "AI-generated" label on every frame)."""

    path: str = Field(default="loglines")
    default_shots: int = 6

    def parse(self, file: Path) -> tuple[str, str, dict]:
        """(episode_id, logline, write_request keyword arguments) or BadRequest naming what is wrong."""
        episode_id = file.stem
        try:
            lines = [line.strip() for line in file.read_bytes().decode("utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise BadRequest("file is not UTF-8 text") from None
        if not lines:
            raise BadRequest("logline is empty")
        options: dict = {"shots": self.default_shots, "seed": 0, "duration_s": None}
        presets: dict = {}
        numbers = {"shots": "shots", "seed": "seed", "duration": "duration_s"}
        for line in lines[1:]:
            key, _, raw_value = (part.strip() for part in line.partition(":"))
            key, value = key.lower(), raw_value.lower()
            if key in ("caption_style", "lighting", "series"):
                presets[key] = value  # write_request validates presets with the rest of the request
            elif key == "cast":
                presets["cast"] = parse_cast(value)
            elif key == "music":
                presets["music"] = self._beside(file, raw_value)
            elif key == "ai_label" and value in ("yes", "no"):
                presets["ai_label"] = value == "yes"
            elif key in numbers and (value.isdigit() or (key == "duration" and value.replace(".", "", 1).isdigit())):
                options[numbers[key]] = float(value) if key == "duration" else int(value)
            else:
                raise BadRequest(f"unexpected line {line[:60]!r}; after the logline only 'shots: N', 'seed: S', "
                                 "'duration: SECONDS', 'caption_style: NAME', 'lighting: MOOD', 'cast: CARD, CARD', "
                                 "'series: NAME', 'music: FILE' and 'ai_label: yes|no' are allowed (N and S whole "
                                 "numbers)")
        return episode_id, clean_logline(lines[0]), dict(options, presets=Presets(**presets))

    @staticmethod
    def _beside(logline_file: Path, name: str) -> Path:
        """A file named in a logline file: only one in the same folder (a name never reaches elsewhere)."""
        folder = logline_file.parent.resolve()
        candidate = (folder / name).resolve()
        if candidate.parent != folder:
            raise BadRequest(f"music file {name!r} must be a file name in the loglines folder {folder}")
        return candidate


def _fingerprint(file: Path) -> str:
    """The content hash of a logline file; an oversized file is never read, its size and mtime stand in."""
    stat = file.stat()
    if stat.st_size > MAX_LOGLINE_FILE_BYTES:
        return f"oversized:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(file.read_bytes()).hexdigest()[:16]


@sensor(job=plan_episode_job, minimum_interval_seconds=10, default_status=DefaultSensorStatus.RUNNING)
def logline_sensor(context: SensorEvaluationContext, loglines: LoglineInbox, store: ArtifactStoreResource):
    """Start an episode for every new logline file. The cursor remembers each file's content fingerprint, so a
    file is started once (a changed file is a new request); malformed files are logged once and skipped."""
    folder = Path(loglines.path)
    if not folder.is_dir():
        return SkipReason(f"loglines folder {folder.resolve()} does not exist")
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    run_requests, new_episodes = [], []
    for file in sorted(folder.glob(f"*{LOGLINE_SUFFIX}")):
        try:
            if not file.is_file():
                continue
            fingerprint = _fingerprint(file)
        except OSError as exc:  # removed or unreadable between listing and reading: try again next tick
            context.log.warning(f"cannot read logline file {file.name}: {exc}")
            continue
        if seen.get(file.name) == fingerprint:
            continue
        seen[file.name] = fingerprint
        try:
            if fingerprint.startswith("oversized:"):
                raise BadRequest(f"file is larger than {MAX_LOGLINE_FILE_BYTES} bytes")
            episode_id, logline, options = loglines.parse(file)
            write_request(store.store(), episode_id, logline, source=f"loglines:{file.name}", **options)
        except (BadRequest, ValueError, OSError) as exc:
            context.log.warning(f"skipping logline file {file.name}: {exc}")
            continue
        new_episodes.append(episode_id)
        run_requests.append(RunRequest(run_key=f"{episode_id}:{fingerprint}", partition_key=episode_id,
                                       tags={"microdrama/source": file.name}))
    known = set(context.instance.get_dynamic_partitions(episode_partitions.name))
    to_add = [e for e in dict.fromkeys(new_episodes) if e not in known]
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[episode_partitions.build_add_request(to_add)] if to_add else [],
        cursor=json.dumps(seen, sort_keys=True),
    )


@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, monitored_jobs=[plan_episode_job],
                   request_job=render_shot_job, default_status=DefaultSensorStatus.RUNNING)
def shot_fanout_sensor(context: RunStatusSensorContext, store: ArtifactStoreResource):
    """A planned episode gets one render run per shot."""
    episode_id = context.dagster_run.tags.get("dagster/partition")
    if not episode_id:
        return SkipReason("plan run has no partition")
    manifest = EpisodeArtifacts(store.store(), episode_id).manifest()
    return [
        RunRequest(run_key=f"{context.dagster_run.run_id}:{shot.id}",
                   partition_key=shot_partition_key(episode_id, shot.id))
        for shot in manifest.shots
    ]


@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, monitored_jobs=[render_shot_job],
                   request_job=assemble_episode_job, default_status=DefaultSensorStatus.RUNNING)
def assembly_sensor(context: RunStatusSensorContext, store: ArtifactStoreResource):
    """Once every shot of an episode has renditions newer than its manifest, assemble the episode (once per
    distinct set of shot renders)."""
    episode_id = context.dagster_run.tags.get("dagster/partition/episode")
    if not episode_id:
        return SkipReason("render run has no episode partition")
    manifest = EpisodeArtifacts(store.store(), episode_id).manifest()
    planned = _latest_storage_id(context.instance, "episode_manifest", episode_id) or 0
    storage_ids = []
    for shot in manifest.shots:
        rendered = _latest_storage_id(context.instance, "shot_renditions", str(shot_partition_key(episode_id, shot.id)))
        if rendered is None or rendered < planned:
            return SkipReason(f"episode {episode_id}: shot {shot.id} not rendered since the last plan")
        storage_ids.append(str(rendered))
    return RunRequest(run_key=f"assemble:{episode_id}:{'-'.join(storage_ids)}", partition_key=episode_id)


def _latest_storage_id(instance: DagsterInstance, asset: str, partition: str) -> int | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return records[0].storage_id if records else None


@sensor(job=publish_episode_job, minimum_interval_seconds=15, default_status=DefaultSensorStatus.RUNNING)
def approval_sensor(context: SensorEvaluationContext, store: ArtifactStoreResource):
    """Publish each episode a person approves (``microdrama approve`` or the preview page). The cursor remembers
    the approvals already acted on. An approval of a package that has changed since (re-rendered after review)
    publishes nothing: the new package needs its own approval."""
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    artifacts = store.store()
    run_requests = []
    for approval in approvals(artifacts):
        name = f"{approval.episode_id}.{approval.version}"
        if name in seen:
            continue
        try:
            current = package_version(EpisodeArtifacts(artifacts, approval.episode_id))
        except ApprovalError as exc:  # e.g. the package is being replaced right now: look again next tick
            context.log.warning(f"approval of {name} not acted on yet: {exc}")
            continue
        seen.add(name)
        if current != approval.version:
            context.log.warning(f"{approval.episode_id}: version {approval.version} was approved, but the package "
                                f"is now {current}; it needs its own approval before it is published")
            continue
        run_requests.append(RunRequest(run_key=f"publish:{name}", partition_key=approval.episode_id,
                                       tags={"microdrama/approved_by": approval.approved_by[:63]}))
    return SensorResult(run_requests=run_requests, cursor=json.dumps(sorted(seen)))

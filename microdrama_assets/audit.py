"""What made an episode, so it can be reproduced and audited: each model call (the model, its weights hash, the
seed, the prompt and the parameters), each moderation verdict, approval and publication, in an append-only event
log per episode that pandas and DuckDB query. Plain data, free of torch and Dagster."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from .storage import ArtifactStore

# Files whose bytes are a model's weights or define how they are used; everything else in a model directory
# (READMEs, images, caches) does not change what the model computes.
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".json", ".model", ".txt", ".yaml", ".npz"}
_hash_cache: dict[tuple[str, tuple], str] = {}


@dataclass(frozen=True)
class ModelCall:
    stage: str  # planner, keyframes, voice, motion, lipsync
    backend: str
    model: str  # the local path (or id) the weights came from
    weights_sha256: str
    device: str
    seed: int | None
    prompt: str
    params: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def weights_sha256(path: str | Path) -> str:
    """One hash over a model directory's weight and config files (relative names and bytes), or over a single
    checkpoint file. Cached per process by the files' sizes and modification times, so a 7 GB checkpoint is read
    once, and read again when it changes."""
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    else:
        files = [root]
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(root.resolve()), stamp)
    if key not in _hash_cache:
        digest = hashlib.sha256()
        for file in files:
            digest.update(str(file.relative_to(root) if root.is_dir() else file.name).encode() + b"\0")
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]


def calls_json(calls: list[ModelCall]) -> str:
    return json.dumps([call.as_dict() for call in calls], indent=2, sort_keys=True, default=str)


AUDIT_SCHEMA_VERSION = 1
EVENT_KINDS = ("request", "edit", "render", "moderation", "approval", "publish", "publish_refused")
_FRAME_COLUMNS = ["event_id", "time", "kind", "actor", "episode_id", "run_id", "asset", "partition", "backend",
                  "stage", "model", "weights_sha256", "device", "seed", "prompt_sha256", "prompt", "content_hash",
                  "passed", "detail"]


class AuditError(ValueError):
    """An audit event that cannot be recorded or a query that cannot run; the message says why."""


def _body_sha256(event: dict) -> str:
    body = {key: value for key, value in event.items() if key != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def prompt_sha256(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


class AuditLog:
    """One episode's append-only audit log: each event is its own immutable JSON object under
    ``episodes/<id>/audit/events/``, named by its UTC time and a random suffix, so writers on several machines
    (parallel shot runs) never collide and nothing is ever rewritten. Each event carries the SHA-256 of its own
    body, so an event edited by hand shows up in ``verify()`` (a forger who recomputes the hash, or deletes an
    event, is not caught: that needs write-once storage such as S3 Object Lock). The class has no way to change
    or remove an event."""

    def __init__(self, store: "ArtifactStore", episode_id: str):
        from .media.manifest import check_id

        self.store = store
        self.episode_id = check_id(episode_id, "episode id")
        self.directory = store.path("episodes", self.episode_id, "audit", "events")

    def append(self, kind: str, actor: str, **fields) -> dict:
        """Record one event; ``fields`` are JSON-serialisable facts (asset, partition, backend, calls, ...)."""
        if kind not in EVENT_KINDS:
            raise AuditError(f"unknown audit event kind {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        if not actor or len(actor) > 120:
            raise AuditError("an audit event needs an actor (who or what acted), at most 120 characters")
        now_ns = time.time_ns()
        event = {"schema_version": AUDIT_SCHEMA_VERSION, "event_id": f"{now_ns:020d}-{uuid.uuid4().hex[:12]}",
                 "time": now_ns / 1e9, "kind": kind, "actor": actor, "episode_id": self.episode_id, **fields}
        event["sha256"] = _body_sha256(event)
        self.store.write_json(self.directory / f"{event['event_id']}.json", event)
        return event

    def events(self) -> list[dict]:
        """Every event, oldest first."""
        folder = self.store.mirror_folder(self.directory)
        if not folder.is_dir():
            return []
        return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))]

    def verify(self) -> list[str]:
        """Events whose body no longer matches the hash recorded when they were written."""
        return [f"event {event.get('event_id', '?')} was altered after it was written"
                for event in self.events() if event.get("sha256") != _body_sha256(event)]

    def frame(self) -> "pd.DataFrame":
        """The log as a table, one row per event and one per model call (``_FRAME_COLUMNS``)."""
        return audit_frame(self.events())


def audit_frame(events: list[dict]) -> "pd.DataFrame":
    """Events as rows: a render event with model calls gives a row per call; ``detail`` keeps the rest as JSON."""
    import pandas as pd

    rows = []
    for event in events:
        base = {column: event.get(column) for column in _FRAME_COLUMNS if column in event}
        base["time"] = pd.Timestamp(event["time"], unit="s", tz="UTC")
        base["detail"] = json.dumps({key: value for key, value in event.items()
                                     if key not in _FRAME_COLUMNS and key not in ("calls", "sha256")},
                                    sort_keys=True, default=str)
        for call in event.get("calls") or [None]:
            row = dict(base)
            if call is not None:
                row.update({key: call.get(key) for key in ("stage", "backend", "model", "weights_sha256", "device",
                                                           "seed", "prompt")})
                row["prompt_sha256"] = prompt_sha256(call.get("prompt") or "")
            rows.append(row)
    return pd.DataFrame(rows, columns=_FRAME_COLUMNS)


def query_audit(frame: "pd.DataFrame", sql: str) -> "pd.DataFrame":
    """Run DuckDB SQL over the log, which the query names as ``audit``."""
    import duckdb

    connection = duckdb.connect()
    try:
        connection.register("audit", frame)
        return connection.execute(sql).df()
    except duckdb.Error as exc:
        raise AuditError(f"audit query failed: {exc}") from None
    finally:
        connection.close()


def audit_summary(frame: "pd.DataFrame") -> str:
    """Markdown for asset metadata: what made the episode (backend and model per asset), moderation verdicts,
    and who approved and published which version when."""
    if frame.empty:
        return "No audit events yet."
    # Embedded backends have no model: those columns are all missing, so they are made text before filling.
    renders = (frame[frame["kind"] == "render"].astype({"model": object, "weights_sha256": object})
               .fillna({"model": "", "weights_sha256": ""}))
    made = (renders.groupby(["asset", "backend", "model"], dropna=False)
            .agg(partitions=("partition", "nunique"), weights=("weights_sha256", lambda s: s.str[:12].max()))
            .reset_index())
    lines = ["| asset | backend | model | weights sha256 | partitions |", "|---|---|---|---|---|"]
    lines += [f"| {r.asset} | {r.backend} | {r.model or '-'} | {r.weights or '-'} | {r.partitions} |"
              for r in made.itertuples()]
    moderation = frame[frame["kind"] == "moderation"]
    if not moderation.empty:
        latest = moderation.assign(scope=moderation["detail"].map(lambda d: json.loads(d).get("scope")))
        latest = latest.sort_values("time").groupby("scope").tail(1)
        blocked = latest[latest["passed"] == False]  # noqa: E712 (a pandas column, not a bool)
        lines.append(f"\nModeration: {len(latest)} subjects checked, {len(blocked)} blocked.")
    for row in frame[frame["kind"].isin(["approval", "publish", "publish_refused"])].itertuples():
        lines.append(f"\n- {row.time:%Y-%m-%d %H:%M:%S} UTC {row.kind} of version {row.content_hash} by {row.actor}")
    return "\n".join(lines)

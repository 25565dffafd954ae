"""Content-addressed caching of stage outputs, free of Dagster.

Every expensive stage is keyed by a hash of what it reads: its upstream stages (through the key recorded beside
their artifact, or the artifact's bytes when it has no valid record), the parts of the manifest it uses, the
backend and its model weights, parameters, seed and a code version per stage (``STAGE_VERSIONS``: bump a stage's
number when a code change alters its output).

Two things are kept per key:

- a **record** beside the episode's artifact (``.<stage>.cache.json`` in the shot or episode folder): the key,
  the inputs it was made from, and each file's size and modification time, so "is the artifact in place already
  this key's output?" is answered by a few ``stat`` calls;
- an **entry** in the cache (``cache/<stage>/<key>/`` under the data root: ``payload/`` holding a copy of the
  artifact and ``entry.json`` with every file's size and SHA-256), written atomically through the ArtifactStore.
  Entries are copies, never hard links, so a later write to the episode's copy cannot change them; a restore
  verifies every byte against ``entry.json``, and an entry that fails (partial, corrupted) is discarded, not used.

Episode-level stages whose output is a cheap re-assembly of cached parts (captions, master, HLS package, delivery
manifest, publish) keep only a record: they are skipped when current, and rebuilt otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import av

from .artifacts import CHARACTER_DESCRIPTOR, EpisodeArtifacts, ShotArtifacts
from .audit import weights_sha256
from .media.audio_mix import AudioFileError
from .media.hls import MASTER_PLAYLIST
from .media.sfx import cues_in, sfx_library_files
from .media.manifest import Character, EpisodeManifest, Shot
from .publishing import VERSIONS_DIR, ObjectStore, PublishError
from .storage import ArtifactStore, StorageError

CACHE_DIR = "cache"
ENTRY_FILE = "entry.json"
PAYLOAD_DIR = "payload"
_CHUNK = 1 << 20
EPISODES_PREFIX = "episodes"  # publish_episode's default prefix

# The code version of each stage: part of its key and its Dagster code_version. Bump one when a change to the
# stage (or the media code it runs) changes its output, so earlier cache entries stop matching.
STAGE_VERSIONS: dict[str, str] = {
    "storyboard": "1",
    "keyframes": "2",
    "voice": "1",
    "clip": "1",
    "composite": "2",
    "renditions": "2",
    "episode_audio": "1",
    "captions": "1",
    "master": "2",
    "hls": "2",
    "delivery": "2",
    "published": "1",
    "preview": "1",
}

# The model-backend settings each stage's output depends on (besides ``device``).
_STAGE_SETTINGS = {"planner": "planner_", "keyframes": "keyframes_", "voice": "voice_", "motion": "motion_",
                   "lipsync": "lipsync_"}


class CacheError(RuntimeError):
    """A cache entry that cannot be used (missing files, wrong sizes or bytes)."""


def _canonical(value: Any) -> Any:
    """JSON-ready form of key inputs: dataclasses and pydantic models as dicts, paths as strings."""
    if is_dataclass(value) and not isinstance(value, type):
        return _canonical(asdict(value))
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class CacheKey:
    """A stage's key: the SHA-256 of its stage name, code version and inputs (canonical JSON)."""

    stage: str
    inputs: dict
    digest: str = field(init=False)

    def __post_init__(self):
        if self.stage not in STAGE_VERSIONS:
            raise ValueError(f"unknown cache stage {self.stage!r}")
        object.__setattr__(self, "inputs", _canonical(self.inputs))
        payload = json.dumps({"stage": self.stage, "code_version": STAGE_VERSIONS[self.stage], "inputs": self.inputs},
                             sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        object.__setattr__(self, "digest", hashlib.sha256(payload.encode("utf-8")).hexdigest())

    @property
    def data_version(self) -> str:
        """What Dagster shows as the asset's data version: downstream assets go stale when it changes."""
        return self.digest[:16]


@dataclass(frozen=True)
class Outcome:
    """How a stage's artifact came to be: ``hit`` (already in place, or restored from the cache) or ``miss``
    (computed, then stored), and what changed against the previous record."""

    key: CacheKey
    status: str  # hit | miss
    source: str  # in place | restored | computed
    changed: tuple[str, ...] = ()
    note: str = ""
    value: Any = None

    @property
    def hit(self) -> bool:
        return self.status == "hit"

    def metadata(self) -> dict:
        """Plain values for the asset's metadata."""
        meta = {"cache": self.status, "cache_key": self.key.digest, "cache_source": self.source}
        if self.status == "miss":
            meta["cache_changed"] = ", ".join(self.changed) or "no earlier record"
        if self.note:
            meta["cache_note"] = self.note
        return meta


# --- files ------------------------------------------------------------------------------------------------------

def _files_under(path: Path, base: Path) -> dict[str, Path]:
    """Relative name -> file for a file or every file under a directory (``base``-relative, POSIX)."""
    if path.is_dir():
        return {p.relative_to(base).as_posix(): p for p in sorted(path.rglob("*")) if p.is_file()}
    if path.is_file():
        return {path.relative_to(base).as_posix(): path}
    raise StorageError(f"missing artifact {path}")


def _fingerprint(paths: Iterable[Path], base: Path) -> dict[str, list[int]]:
    found = {}
    for path in paths:
        for name, file in _files_under(path, base).items():
            stat = file.stat()
            found[name] = [stat.st_size, stat.st_mtime_ns]
    return found


def content_digest(paths: Iterable[Path], base: Path) -> str:
    """SHA-256 over the names and bytes of every file of an artifact."""
    digest = hashlib.sha256()
    for path in paths:
        for name, file in _files_under(path, base).items():
            digest.update(name.encode("utf-8") + b"\0")
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return content_digest([path], path.parent)


def _copy_hashing(source: Path, target: Path) -> tuple[int, str]:
    """Copy ``source`` to ``target``; (bytes, SHA-256 of what was copied)."""
    digest, size = hashlib.sha256(), 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as reader, target.open("wb") as writer:
        for block in iter(lambda: reader.read(_CHUNK), b""):
            digest.update(block)
            writer.write(block)
            size += len(block)
    return size, digest.hexdigest()


# --- records beside the artifacts --------------------------------------------------------------------------------

def record_path(directory: Path, stage: str) -> Path:
    return directory / f".{stage}.cache.json"


def read_record(store: ArtifactStore, directory: Path, stage: str) -> dict | None:
    path = record_path(directory, stage)
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if store.available(path) else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("stage") == stage else None


def current_record(store: ArtifactStore, directory: Path, stage: str, paths: list[Path]) -> dict | None:
    """The stage's record when the artifact is still exactly what it describes (same files, sizes and
    modification times), else None. Through the store, so a remote store's newer copy is fetched first (and
    then no longer matches)."""
    record = read_record(store, directory, stage)
    if record is None:
        return None
    try:
        if not all(store.available(path) for path in paths) or _fingerprint(paths, directory) != record.get("files"):
            return None
    except (OSError, StorageError):
        return None
    return record


def artifact_identity(store: ArtifactStore, directory: Path, stage: str, paths: list[Path], produced_by: str) -> str:
    """What a downstream key uses for an upstream artifact: the key recorded beside it, or, without a valid
    record (an artifact made before caching, or changed by hand), a hash of its bytes."""
    for path in paths:
        store.require(path, produced_by)
    record = current_record(store, directory, stage, paths)
    if record is not None:
        return record["key"]
    return "content:" + content_digest(paths, directory)


def changed_inputs(previous: dict | None, key: CacheKey) -> tuple[str, ...]:
    """The inputs (top-level names) in which ``key`` differs from the ``previous`` record's."""
    if previous is None or "inputs" not in previous:
        return ()
    before, now = previous["inputs"], key.inputs
    changed = sorted(name for name in set(before) | set(now) if before.get(name) != now.get(name))
    if not changed and previous.get("code_version") != STAGE_VERSIONS[key.stage]:
        return ("code_version",)
    return tuple(changed) or ("artifact changed on disk",)


# --- the cache ---------------------------------------------------------------------------------------------------

class ArtifactCache:
    """Entries under ``cache/<stage>/<key>/`` in the store, and records beside each episode's artifacts."""

    def __init__(self, store: ArtifactStore):
        self.store = store

    def entry_dir(self, key: CacheKey) -> Path:
        return self.store.path(CACHE_DIR, key.stage, key.digest)

    def record(self, key: CacheKey, directory: Path, paths: list[Path], **extra) -> None:
        """Note beside the artifact that it is ``key``'s output, with its files' sizes and modification times."""
        self.store.write_json(record_path(directory, key.stage), {
            "stage": key.stage, "key": key.digest, "code_version": STAGE_VERSIONS[key.stage], "inputs": key.inputs,
            "files": _fingerprint(paths, directory), **extra})

    def current(self, key: CacheKey, directory: Path, paths: list[Path]) -> dict | None:
        """The record when the artifact in place is this key's output, else None."""
        record = current_record(self.store, directory, key.stage, paths)
        return record if record is not None and record.get("key") == key.digest else None

    def _entry(self, key: CacheKey) -> dict | None:
        path = self.entry_dir(key) / ENTRY_FILE
        try:
            # Through the store: a remote store brings the entry another machine made.
            entry = json.loads(path.read_text(encoding="utf-8")) if self.store.available(path) else None
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) and entry.get("key") == key.digest else None

    def discard(self, key: CacheKey) -> None:
        """Remove an entry (moved aside first, so a concurrent restore never sees it half-deleted)."""
        entry = self.entry_dir(key)
        if entry.exists():
            retired = entry.with_name(f".{entry.name}.discarded-{uuid.uuid4().hex[:8]}")
            with contextlib.suppress(OSError):
                os.replace(entry, retired)
                shutil.rmtree(retired, ignore_errors=True)

    def restore(self, key: CacheKey, directory: Path, paths: list[Path]) -> bool:
        """Put the entry's copy of the artifact in place (atomically per path, verified byte for byte); False
        when there is no entry. A partial or corrupted entry raises CacheError and is discarded."""
        entry = self._entry(key)
        if entry is None:
            if self.entry_dir(key).exists():
                self.discard(key)
                raise CacheError(f"cache entry {key.stage}/{key.digest} has no valid {ENTRY_FILE}; discarded")
            return False
        names = [path.relative_to(directory).as_posix() for path in paths]
        if entry.get("paths") != names:
            self.discard(key)
            raise CacheError(f"cache entry {key.stage}/{key.digest} holds {entry.get('paths')}, not {names}")
        payload = self.entry_dir(key) / PAYLOAD_DIR
        files: dict = entry.get("files", {})
        try:
            with contextlib.ExitStack() as writes:
                for path, name in zip(paths, names):
                    source = payload / name
                    if source.is_dir():
                        staging = writes.enter_context(self.store.writing_dir(path))
                        wanted = {f: meta for f, meta in files.items() if f.startswith(name + "/")}
                        present = {f for f in _files_under(source, payload)}
                        if present != set(wanted):
                            raise CacheError(f"files differ from {ENTRY_FILE}: {sorted(present ^ set(wanted))[:5]}")
                        for relative, meta in wanted.items():
                            self._verified_copy(payload / relative, staging / relative[len(name) + 1:], meta)
                    else:
                        tmp = writes.enter_context(self.store.writing(path))
                        if name not in files:
                            raise CacheError(f"{name} is not listed in {ENTRY_FILE}")
                        self._verified_copy(source, tmp, files[name])
        except (CacheError, OSError) as exc:
            self.discard(key)
            raise CacheError(f"cache entry {key.stage}/{key.digest} is unusable ({exc}); discarded") from None
        self.record(key, directory, paths)
        with contextlib.suppress(OSError):  # last use, for pruning by age
            os.utime(self.entry_dir(key) / ENTRY_FILE)
        return True

    @staticmethod
    def _verified_copy(source: Path, target: Path, meta: dict) -> None:
        if not source.is_file() or source.stat().st_size != meta["size"]:
            raise CacheError(f"{source.name}: missing or not {meta['size']} bytes")
        size, sha = _copy_hashing(source, target)
        if size != meta["size"] or sha != meta["sha256"]:
            raise CacheError(f"{source.name}: bytes differ from {ENTRY_FILE}")

    def put(self, key: CacheKey, directory: Path, paths: list[Path]) -> None:
        """Store a copy of the artifact in place as the entry for ``key`` (replacing any entry of that key)."""
        names = [path.relative_to(directory).as_posix() for path in paths]
        entry_dir = self.entry_dir(key)
        with self.store.writing_dir(entry_dir) as staging:
            files = {}
            for path in paths:
                for relative, file in _files_under(path, directory).items():
                    size, sha = _copy_hashing(file, staging / PAYLOAD_DIR / relative)
                    files[relative] = {"size": size, "sha256": sha}
            (staging / ENTRY_FILE).write_text(json.dumps({
                "key": key.digest, "stage": key.stage, "code_version": STAGE_VERSIONS[key.stage],
                "inputs": key.inputs, "paths": names, "files": files, "created": time.time()},
                indent=1, sort_keys=True, ensure_ascii=False), encoding="utf-8")

    def materialize(self, key: CacheKey, directory: Path, paths: list[Path], build: Callable[[], Any],
                    keep: bool = True, log: Callable[[str], None] = lambda message: None) -> Outcome:
        """The artifact at ``paths`` (under ``directory``) for ``key``: left as it is when it already is that
        key's output, else restored from the cache entry, else made by ``build`` (which writes ``paths``
        atomically itself), recorded and, with ``keep``, stored as the key's entry."""
        if self.current(key, directory, paths) is not None:
            return Outcome(key, "hit", "in place")
        previous = read_record(self.store, directory, key.stage)
        note = ""
        if keep:
            try:
                if self.restore(key, directory, paths):
                    return Outcome(key, "hit", "restored", changed_inputs(previous, key))
            except CacheError as exc:
                note = str(exc)
                log(note)
        value = build()
        self.record(key, directory, paths)
        if keep:
            try:
                self.put(key, directory, paths)
            except OSError as exc:  # a full disk or a concurrent writer of the same key: the artifact stands
                note = f"{note}; " if note else ""
                note += f"not stored in the cache: {exc}"
                log(note)
        return Outcome(key, "miss", "computed", changed_inputs(previous, key), note, value)

    def prune(self, max_age_s: float) -> int:
        """Remove entries not used (made or restored) for ``max_age_s`` seconds; returns how many went."""
        root = self.store.path(CACHE_DIR)
        removed, cutoff = 0, time.time() - max_age_s
        for entry_file in root.glob(f"*/*/{ENTRY_FILE}") if root.is_dir() else ():
            if entry_file.stat().st_mtime < cutoff:
                shutil.rmtree(entry_file.parent, ignore_errors=True)
                removed += 1
        return removed


# --- what each stage's key is made of ----------------------------------------------------------------------------

def backend_identity(backend: Any, stage: str) -> dict:
    """A backend as far as its output goes: its name and, for model backends (``settings``), the stage's
    settings, the device and the SHA-256 of every local model they name."""
    identity: dict[str, Any] = {"name": backend.name}
    settings = getattr(backend, "settings", None)
    if settings is None:
        return identity
    prefix = _STAGE_SETTINGS[stage]
    for setting in fields(settings):
        if not setting.name.startswith(prefix):
            continue
        value = getattr(settings, setting.name)
        identity[setting.name] = value
        if isinstance(value, str) and value and Path(value).expanduser().exists():
            identity[f"{setting.name}_sha256"] = weights_sha256(Path(value).expanduser())
    # Half precision on a GPU, full on a CPU: the device changes the numbers.
    from .ml.runtime import pick_device  # a model backend is loaded, so torch already is

    identity["device"] = str(pick_device(settings.device).type)
    return identity


def _look(character: Character) -> dict:
    """Everything about a character that shows in a picture (the voice does not)."""
    return character.model_dump(mode="json", exclude={"voice"})


def _picture(shot: Shot) -> dict:
    """What the storyboard and keyframes read from a shot: all but its length and its lines' words (the
    speakers choose who the shot is about and who gestures)."""
    return {**shot.model_dump(mode="json", exclude={"duration_s", "dialogue"}),
            "speakers": [line.speaker for line in shot.dialogue]}


def _frame_size(manifest: EpisodeManifest) -> list[int]:
    return [manifest.width, manifest.height, manifest.fps]


@dataclass(frozen=True)
class Stage:
    """Where a stage keeps its artifact: the paths under one folder (the shot's or the episode's)."""

    name: str
    produced_by: str  # the asset, for error messages

    def paths(self, artifacts: ShotArtifacts | EpisodeArtifacts) -> list[Path]:
        return [getattr(artifacts, attribute) for attribute in _STAGE_PATHS[self.name]]


_STAGE_PATHS = {
    "storyboard": ["storyboard_dir"], "keyframes": ["keyframes_dir"], "voice": ["dialogue_dir"],
    "clip": ["clip_dir"], "composite": ["composited"], "renditions": ["renditions_dir"],
    "episode_audio": ["audio_dir"], "captions": ["captions_vtt"], "master": ["master_mp4"], "hls": ["hls_dir"],
    "delivery": ["delivery_json", "poster"], "published": [],
}
STAGES = {name: Stage(name, produced_by) for name, produced_by in [
    ("storyboard", "storyboard"), ("keyframes", "keyframes"), ("voice", "dialogue_audio"), ("clip", "shot_clip"),
    ("composite", "composited_shot"), ("renditions", "shot_renditions"), ("episode_audio", "episode_audio"),
    ("captions", "episode_captions"), ("master", "episode_master"), ("hls", "hls_package"),
    ("delivery", "delivery_manifest"), ("published", "published_episode")]}
SHOT_STAGE_ORDER = ["storyboard", "keyframes", "voice", "clip", "composite", "renditions"]
EPISODE_STAGE_ORDER = ["episode_audio", "captions", "master", "hls", "delivery", "published"]


def identity(stage: str, artifacts: ShotArtifacts | EpisodeArtifacts) -> str:
    spec = STAGES[stage]
    return artifact_identity(artifacts.store, artifacts.directory, stage, spec.paths(artifacts), spec.produced_by)


def storyboard_key(manifest: EpisodeManifest, shot: Shot) -> CacheKey:
    return CacheKey("storyboard", {"shot": _picture(shot), "characters": [_look(manifest.character(c))
                                                                          for c in shot.characters],
                                   "frame": _frame_size(manifest)})


def bundle_identity(episode: EpisodeArtifacts, character_id: str) -> str:
    """The character's bundle as the episode holds it (reference views and descriptor; not bundle.json, whose
    card holds the voice): keyframes are made from it and judged against it."""
    directory = episode.character_dir(character_id)
    episode.store.require(directory / CHARACTER_DESCRIPTOR, "character_bundles")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != "bundle.json"
                   and not p.name.startswith("."))
    return content_digest(files, directory)


def keyframes_key(episode: EpisodeArtifacts, manifest: EpisodeManifest, shot: Shot, backend: dict) -> CacheKey:
    shown = [manifest.character(c) for c in shot.characters]
    return CacheKey("keyframes", {
        "storyboard": identity("storyboard", episode.shot(shot.id)), "shot": _picture(shot),
        "characters": [_look(c) for c in shown], "bundles": {c.id: bundle_identity(episode, c.id) for c in shown},
        "frame": _frame_size(manifest), "backend": backend,
        # The pixels carry the episode's watermark: another episode's identical shot is not the same keyframes.
        "watermark": episode.episode_id})


def voice_key(manifest: EpisodeManifest, shot: Shot, backend: dict) -> CacheKey:
    # From the words and voices, not the audio: espeak-ng's samples differ slightly from call to call.
    return CacheKey("voice", {
        "lines": [{"speaker": line.speaker, "text": line.text, "voice": manifest.character(line.speaker).voice}
                  for line in shot.dialogue],
        "frames": shot.frames, "backend": backend})


def clip_key(episode: EpisodeArtifacts, manifest: EpisodeManifest, shot: Shot, backend: dict,
             mezzanine: Any) -> CacheKey:
    return CacheKey("clip", {
        "keyframes": identity("keyframes", episode.shot(shot.id)), "camera": shot.camera.value,
        "frames": shot.frames, "seed": shot.seed, "frame": _frame_size(manifest), "backend": backend,
        "mezzanine": mezzanine})


def composite_key(episode: EpisodeArtifacts, manifest: EpisodeManifest, shot: Shot, backend: dict,
                  mezzanine: Any) -> CacheKey:
    artifacts = episode.shot(shot.id)
    return CacheKey("composite", {
        "clip": identity("clip", artifacts), "dialogue": identity("voice", artifacts), "mood": shot.mood.value,
        "caption_style": manifest.caption_style.value, "ai_label": manifest.ai_label, "frames": shot.frames,
        "frame": _frame_size(manifest),
        "backend": backend, "mezzanine": mezzanine})


def renditions_key(episode: EpisodeArtifacts, shot: Shot, preset: Any, variants: Iterable[Any]) -> CacheKey:
    # The shot's place in the episode is not part of the key: fragments are retimed, not re-encoded, when an
    # earlier shot changes length. The encoder libraries are: shots assembled into one playlist must share one
    # init segment.
    return CacheKey("renditions", {
        "composited": identity("composite", episode.shot(shot.id)), "frames": shot.frames, "preset": preset,
        "variants": list(variants), "encoder_library": f"pyav {av.__version__}"})


def shot_stage_key(stage: str, episode: EpisodeArtifacts, manifest: EpisodeManifest, shot: Shot, backends: Any,
                   encode: Any) -> CacheKey:
    """The key of one shot stage with the given ``backends`` (BackendSettings: ``<stage>_backend()``) and
    ``encode`` settings (EncodeSettings: ``mezzanine()``, ``encode_preset()``, ``variants()``): the one
    definition the assets and the runner's up-to-date check share. Upstream stages must be in place."""
    if stage == "storyboard":
        return storyboard_key(manifest, shot)
    if stage == "keyframes":
        return keyframes_key(episode, manifest, shot, backend_identity(backends.keyframes_backend(), "keyframes"))
    if stage == "voice":
        return voice_key(manifest, shot, backend_identity(backends.voice_backend(), "voice"))
    if stage == "clip":
        return clip_key(episode, manifest, shot, backend_identity(backends.motion_backend(), "motion"),
                        encode.mezzanine())
    if stage == "composite":
        return composite_key(episode, manifest, shot, backend_identity(backends.lipsync_backend(), "lipsync"),
                             encode.mezzanine())
    if stage == "renditions":
        return renditions_key(episode, shot, encode.encode_preset(), encode.variants())
    raise ValueError(f"{stage!r} is not a shot stage")


def episode_audio_sources(episode: EpisodeArtifacts, manifest: EpisodeManifest) -> tuple[Path | None, dict[str, Path]]:
    """The files the mix reads besides the dialogue: the request's music file (None: the procedural bed) and the
    SFX library's files for the cues the episode calls for. AudioFileError / StorageError name a bad one."""
    name = episode.store.read_json(episode.request, "an episode request").get("music")
    music = None
    if name:
        music = episode.input_file(name)
        if not episode.store.available(music):
            raise AudioFileError(f"{episode.store.location_of(music)}: no such file")
    wanted = cues_in(manifest)
    library_dir = episode.store.mirror_folder(episode.store.path("sounds", "sfx"))
    library = {cue: path for cue, path in sfx_library_files(library_dir).items() if cue in wanted}
    return music, library


def episode_stage_key(stage: str, episode: EpisodeArtifacts, manifest: EpisodeManifest, encode: Any,
                      publish_location: str = "", keep_versions: int = 0, signer: str = "") -> CacheKey:
    """The key of one episode stage (see ``shot_stage_key``). ``signer`` names the C2PA signing identity (empty:
    unsigned): the master, the package's sidecars and the poster carry its signature."""
    shots = manifest.shots
    if stage == "episode_audio":
        music, library = episode_audio_sources(episode, manifest)
        # The mix reads the whole shot list (moods, actions for SFX cues, locations, lengths, seed).
        return CacheKey(stage, {
            "manifest": manifest, "dialogue": {s.id: identity("voice", episode.shot(s.id)) for s in shots},
            "music": file_sha256(music) if music is not None else None,
            "sfx_library": {cue: file_sha256(path) for cue, path in sorted(library.items())}})
    if stage == "captions":
        return CacheKey(stage, {"manifest": manifest,
                                "dialogue": {s.id: identity("voice", episode.shot(s.id)) for s in shots}})
    if stage == "master":
        return CacheKey(stage, {"shots": [[s.id, s.frames, identity("composite", episode.shot(s.id))] for s in shots],
                                "audio": identity("episode_audio", episode), "signer": signer})
    if stage == "hls":
        return CacheKey(stage, {
            "shots": [[s.id, manifest.start_frame(s.id), s.frames, identity("renditions", episode.shot(s.id))]
                      for s in shots],
            "audio": identity("episode_audio", episode), "captions": identity("captions", episode),
            "variants": list(encode.variants()), "segment_s": encode.segment_seconds, "language": manifest.language,
            "signer": signer})
    if stage == "delivery":
        return CacheKey(stage, {
            "manifest": manifest, "hls": identity("hls", episode), "master": identity("master", episode),
            "captions": identity("captions", episode), "poster": identity("keyframes", episode.shot(shots[0].id)),
            "signer": signer})
    if stage == "published":
        return CacheKey(stage, {
            "parts": {part: identity(part, episode) for part in ("hls", "master", "captions", "delivery")},
            "destination": publish_location, "keep_versions": keep_versions})
    raise ValueError(f"{stage!r} is not an episode stage")


def stale_shot_stage(episode: EpisodeArtifacts, manifest: EpisodeManifest, shot: Shot, backends: Any,
                     encode: Any) -> str | None:
    """The first of the shot's stages whose artifact is not its current key's output (None: all are)."""
    cache, artifacts = ArtifactCache(episode.store), episode.shot(shot.id)
    for stage in SHOT_STAGE_ORDER:
        try:
            key = shot_stage_key(stage, episode, manifest, shot, backends, encode)
        except (StorageError, OSError):
            return stage
        if cache.current(key, artifacts.directory, STAGES[stage].paths(artifacts)) is None:
            return stage
    return None


def stale_episode_stage(episode: EpisodeArtifacts, manifest: EpisodeManifest, encode: Any, objects: ObjectStore,
                        keep_versions: int, signer: str = "") -> str | None:
    """The first episode stage (mix to publish) that is not current (None: the published episode is)."""
    cache = ArtifactCache(episode.store)
    for stage in EPISODE_STAGE_ORDER:
        try:
            key = episode_stage_key(stage, episode, manifest, encode, objects.location, keep_versions, signer)
        except (StorageError, AudioFileError, OSError):
            return stage
        record = cache.current(key, episode.directory, STAGES[stage].paths(episode))
        if record is None:
            return stage
        if stage == "published" and not still_published(objects, episode.episode_id, record.get("version", "")):
            return stage
    return None


def published_master_key(episode_id: str) -> str:
    """The object key of the episode's entry master playlist (what ``publish_episode`` switches last)."""
    return f"{EPISODES_PREFIX}/{episode_id}/{MASTER_PLAYLIST}"


def still_published(objects: ObjectStore, episode_id: str, version: str) -> bool:
    """Whether the episode's entry master in ``objects`` still points at ``version`` (one small read)."""
    if not version:
        return False
    try:
        entry = objects.get_bytes(published_master_key(episode_id))
    except PublishError:
        return False
    return entry is not None and f"{VERSIONS_DIR}/{version}/".encode() in entry

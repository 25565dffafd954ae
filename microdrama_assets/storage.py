"""Artifact storage on the local filesystem: one tree per episode, atomic writes, IDs confined to the root.

Media functions take and return paths, so this module hands out paths inside the root and makes every write
atomic (temp file + rename; whole directories are built aside and swapped in), so a failed step never leaves a
half-written artifact where an earlier good one stood.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

from .media.manifest import check_id


def _read_umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


# Read once at import: os.umask can only be read by setting it, which would race with other threads later.
_UMASK = _read_umask()


def _umasked(mode: int) -> int:
    return mode & ~_UMASK


DEFAULT_DATA_ROOT = "microdrama_data"


def default_data_root() -> str:
    return os.environ.get("MICRODRAMA_DATA", str(Path(DEFAULT_DATA_ROOT).resolve()))


class StorageError(ValueError):
    """A key that would leave the storage root, or an artifact that is not there."""


class ArtifactStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()

    # --- locating -------------------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        """A path under the root; every part must be a plain name (no separators, no '..')."""
        for part in parts:
            if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
                raise StorageError(f"invalid storage path component {part!r}")
        candidate = self.root.joinpath(*parts).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise StorageError(f"path {'/'.join(parts)!r} escapes the storage root {self.root}")
        return candidate

    def episode_dir(self, episode_id: str) -> Path:
        return self.path("episodes", check_id(episode_id, "episode id"))

    def episode_path(self, episode_id: str, *parts: str) -> Path:
        return self.path("episodes", check_id(episode_id, "episode id"), *parts)

    def shot_path(self, episode_id: str, shot_id: str, *parts: str) -> Path:
        return self.episode_path(episode_id, "shots", check_id(shot_id, "shot id"), *parts)

    # --- reading --------------------------------------------------------------------------------------------
    def require(self, path: Path, produced_by: str) -> Path:
        if not path.exists():
            raise StorageError(f"missing artifact {path}: materialize {produced_by} first")
        return path

    def read_json(self, path: Path, produced_by: str) -> dict:
        return json.loads(self.require(path, produced_by).read_text(encoding="utf-8"))

    # --- atomic writing -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, path: Path) -> Iterator[Path]:
        """Yield a temp path beside ``path``; on success it is renamed over ``path``, on failure removed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            # mkstemp makes private files; artifacts are served (HLS) and shared, so give them normal modes.
            os.chmod(tmp_path, _umasked(0o666))
            os.replace(tmp_path, path)
        finally:
            tmp_path.unlink(missing_ok=True)

    def write_bytes(self, path: Path, data: bytes) -> Path:
        with self.writing(path) as tmp:
            tmp.write_bytes(data)
        return path

    def write_text(self, path: Path, text: str) -> Path:
        return self.write_bytes(path, text.encode("utf-8"))

    def write_json(self, path: Path, payload: object) -> Path:
        return self.write_text(path, json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n")

    @contextlib.contextmanager
    def writing_dir(self, path: Path) -> Iterator[Path]:
        """Yield an empty temp directory; on success it replaces ``path`` whole, on failure it is removed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
        try:
            yield staging
            os.chmod(staging, _umasked(0o777))
            retired = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            had_previous = path.exists()
            if had_previous:
                os.replace(path, retired)
            # Between these two renames the directory is briefly absent; readers retry. If the second rename
            # fails (another writer got there first), the previous artifact goes back where it was.
            try:
                os.replace(staging, path)
            except OSError:
                if had_previous and not path.exists():
                    os.replace(retired, path)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

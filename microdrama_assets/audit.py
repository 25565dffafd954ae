"""What each model call used, so an episode can be reproduced and audited: the model, its weights hash, the
seed, the prompt and the parameters. Plain data, free of torch and Dagster."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

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

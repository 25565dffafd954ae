"""Shared by the model backends: local model directories, the device, and loading each model once per process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import torch

from ..audit import weights_sha256

T = TypeVar("T")

_loaded: dict[tuple, object] = {}
_loading = threading.Lock()


class MissingModel(FileNotFoundError):
    """A model backend was selected but its local model directory or checkpoint is missing or incomplete."""


def require_model(path: str | Path | None, stage: str, setting: str, expect: str,
                  needs: Sequence[str] = ()) -> Path:
    """``path`` as a Path when it exists and holds every name in ``needs``; otherwise a MissingModel that names
    the setting, the path and what to put there (``expect``)."""
    if not path:
        raise MissingModel(f"the {stage} backend needs a local model: set {setting} to {expect}")
    model = Path(path).expanduser()
    if not model.exists():
        raise MissingModel(f"{stage} model not found at {model} ({setting}); put {expect} there")
    missing = [name for name in needs if not (model / name).exists()]
    if missing:
        raise MissingModel(f"{stage} model at {model} ({setting}) lacks {', '.join(missing)}; expected {expect}")
    return model


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when available (or asked for), else CPU; asking for CUDA on a machine without it is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} was requested but CUDA is not available on this machine")
    return device


def pick_dtype(device: torch.device) -> torch.dtype:
    """Half precision on the GPU (twice the throughput, half the memory), full precision on the CPU."""
    return torch.float16 if device.type == "cuda" else torch.float32


def load_once(kind: str, path: Path, device: torch.device, loader: Callable[[], T]) -> T:
    """The model at ``path`` loaded by ``loader`` the first time it is asked for in this process, then reused
    across shots and assets; a changed checkpoint (new weights hash) loads again."""
    key = (kind, str(path.resolve()), str(device), weights_sha256(path))
    with _loading:
        if key not in _loaded:
            _loaded[key] = loader()
        return _loaded[key]  # type: ignore[return-value]


def seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)

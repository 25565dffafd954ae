"""Configurable resources: where artifacts live, how hard the encoders work, which backend runs each stage."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from .backends import STAGE_BACKENDS, Backends
from .media.hls import PRESETS, EncodePreset
from .media.video_io import MezzanineSettings
from .storage import ArtifactStore

DEFAULT_DATA_ROOT = "microdrama_data"


def default_data_root() -> str:
    return os.environ.get("MICRODRAMA_DATA", str(Path(DEFAULT_DATA_ROOT).resolve()))


class ArtifactStoreResource(ConfigurableResource):
    """Local-filesystem artifact store rooted at ``root`` (``MICRODRAMA_DATA`` or ./microdrama_data)."""

    root: str = Field(default_factory=default_data_root)

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)


class EncodeSettings(ConfigurableResource):
    """Encoder presets: ``final`` for delivery, ``draft`` for fast previews; HLS segment length in seconds."""

    preset: str = "final"
    segment_seconds: float = Field(default=2.0, ge=1.0, le=6.0)
    mezzanine_x264_preset: str = "superfast"
    mezzanine_crf: int = Field(default=16, ge=0, le=30)

    def encode_preset(self) -> EncodePreset:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown encode preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        base = PRESETS[self.preset]
        return EncodePreset(base.name, base.x264_preset, self.segment_seconds)

    def mezzanine(self) -> MezzanineSettings:
        return MezzanineSettings(self.mezzanine_x264_preset, self.mezzanine_crf)


class BackendSettings(ConfigurableResource):
    """Which backend implements each stage (``embedded`` needs no model weights)."""

    planner: str = "embedded"
    keyframes: str = "embedded"
    voice: str = "embedded"
    motion: str = "embedded"
    lipsync: str = "embedded"

    def resolve(self) -> Backends:
        chosen = {}
        for stage, registry in STAGE_BACKENDS.items():
            name = getattr(self, stage)
            if name not in registry:
                raise ValueError(f"unknown {stage} backend {name!r}; available: {sorted(registry)}")
            chosen[stage] = registry[name]()
        return Backends(**chosen)

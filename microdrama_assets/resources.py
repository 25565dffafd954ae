"""Configurable resources: where artifacts live, how hard the encoders work, which backend runs each stage."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from pydantic import Field

from .backends import STAGE_BACKENDS, Backends
from .media.hls import PRESETS, EncodePreset, VideoVariant, ladder_variants, video_codecs
from .media.video_io import MezzanineSettings
from .publishing import ObjectStore, open_object_store
from .storage import ArtifactStore, default_data_root

class ArtifactStoreResource(ConfigurableResource):
    """Local-filesystem artifact store rooted at ``root`` (``MICRODRAMA_DATA`` or ./microdrama_data)."""

    root: str = Field(default_factory=default_data_root)

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)


class PublishTarget(ConfigurableResource):
    """Where finished episodes are published: ``file:///dir`` or ``s3://bucket/prefix`` (MICRODRAMA_PUBLISH,
    else ``published/`` under the data root). S3 goes through dagster-aws's S3Resource: credentials come from
    the usual AWS sources; ``endpoint_url`` (or AWS_ENDPOINT_URL) points at an S3-compatible server."""

    destination: str
    endpoint_url: str | None = None
    region_name: str | None = None
    keep_versions: int = Field(default=3, ge=1)

    def object_store(self) -> ObjectStore:
        return open_object_store(self.destination, lambda: S3Resource(
            endpoint_url=self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
            region_name=self.region_name or os.environ.get("AWS_REGION"),
        ).get_client())

    @staticmethod
    def from_environment(data_root: str, destination: str | None = None) -> "PublishTarget":
        return PublishTarget(destination=destination or os.environ.get("MICRODRAMA_PUBLISH")
                             or (Path(data_root) / "published").resolve().as_uri())


class EncodeSettings(ConfigurableResource):
    """Encoder presets (``final`` for delivery, ``draft`` for fast previews), the codecs of the ladder (H.264 is
    always in it; ``hevc`` and ``av1`` add a full ladder each) and the HLS segment length in seconds."""

    preset: str = "final"
    video_codecs: list[str] = ["h264"]
    segment_seconds: float = Field(default=2.0, ge=1.0, le=6.0)
    mezzanine_x264_preset: str = "superfast"
    mezzanine_crf: int = Field(default=16, ge=0, le=30)

    def encode_preset(self) -> EncodePreset:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown encode preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[self.preset], segment_s=self.segment_seconds)

    def variants(self) -> tuple[VideoVariant, ...]:
        return ladder_variants(video_codecs(self.video_codecs))

    @staticmethod
    def from_environment(preset: str | None = None, video_codecs: list[str] | None = None) -> "EncodeSettings":
        """Arguments, else MICRODRAMA_ENCODE_PRESET / MICRODRAMA_VIDEO_CODECS (comma-separated), else defaults."""
        codecs = video_codecs or [c.strip() for c in os.environ.get("MICRODRAMA_VIDEO_CODECS", "h264").split(",")
                                  if c.strip()]
        return EncodeSettings(preset=preset or os.environ.get("MICRODRAMA_ENCODE_PRESET", "final"),
                              video_codecs=codecs)

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

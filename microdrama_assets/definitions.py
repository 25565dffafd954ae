"""Wires assets, jobs, sensors and resources together; nothing else lives here."""

from __future__ import annotations

import os

from dagster import Definitions

from .assets import ALL_ASSETS, ASSET_CHECKS
from .execution import executor_named
from .jobs import (analyze_engagement_job, assemble_episode_job, plan_episode_job, publish_episode_job,
                   render_shot_job)
from .resources import (AnalyticsSettings, ArtifactStoreResource, BackendSettings, EncodeSettings, PublishTarget,
                        TrustSettings, default_data_root)
from .sensors import LoglineInbox, approval_sensor, assembly_sensor, logline_sensor, shot_fanout_sensor


def make_definitions(data_root: str | None = None, encode_preset: str | None = None,
                     loglines_dir: str | None = None, video_codecs: list[str] | None = None,
                     publish_to: str | None = None, executor: str | None = None) -> Definitions:
    """The code location; arguments override the environment (MICRODRAMA_DATA, MICRODRAMA_ENCODE_PRESET,
    MICRODRAMA_VIDEO_CODECS, MICRODRAMA_LOGLINES, MICRODRAMA_PUBLISH, MICRODRAMA_EXECUTOR) for tests and
    embedding."""
    data_root = data_root or default_data_root()
    return Definitions(
        assets=ALL_ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=[plan_episode_job, render_shot_job, assemble_episode_job, publish_episode_job, analyze_engagement_job],
        sensors=[logline_sensor, shot_fanout_sensor, assembly_sensor, approval_sensor],
        executor=executor_named(executor),
        resources={
            "store": ArtifactStoreResource(root=data_root),
            "encode": EncodeSettings.from_environment(encode_preset, video_codecs),
            "publish": PublishTarget.from_environment(data_root, publish_to),
            "backends": BackendSettings(),
            "trust": TrustSettings(),
            "analytics": AnalyticsSettings(),
            "loglines": LoglineInbox(path=loglines_dir or os.environ.get("MICRODRAMA_LOGLINES", "loglines")),
        },
    )


defs = make_definitions()

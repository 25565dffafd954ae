"""Configurable resources: where artifacts live, how hard the encoders work, which backend runs each stage, and
how episodes are moderated and signed."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from pydantic import Field

from .audit import weights_sha256
from .backends import (STAGE_BACKENDS, KeyframeBackend, LipSyncBackend, ModelSettings, MotionBackend,
                       PlannerBackend, VoiceBackend)
from .execution import ModelPlacement
from .media.hls import PRESETS, EncodePreset, VideoVariant, ladder_variants, video_codecs
from .media.video_io import MezzanineSettings
from .publishing import ObjectStore, open_object_store
from .storage import ArtifactStore, RetryPolicy, default_data_root, open_artifact_store
from .analytics.event_store import default_events_location
from .trust.moderation import ImageClassifier, ModerationPolicy, TextClassifier, load_policy
from .trust.provenance import ENV_ALG, ENV_CERT, ENV_KEY, ENV_TSA, SigningIdentity, signer_fingerprint

class ArtifactStoreResource(ConfigurableResource):
    """Where artifacts live. By default the local filesystem under ``root`` (``MICRODRAMA_DATA`` or
    ./microdrama_data). With ``location`` ``s3://bucket/prefix`` (``MICRODRAMA_ARTIFACTS``) they live in S3 or an
    S3-compatible store (MinIO...) reached through dagster-aws's S3Resource: credentials come from the usual AWS
    sources, ``endpoint_url`` (or AWS_ENDPOINT_URL) points at an S3-compatible server; each step works on a local
    working copy under ``root``/s3-cache, so steps can run on different machines."""

    root: str = Field(default_factory=default_data_root)
    location: str = Field(default_factory=lambda: os.environ.get("MICRODRAMA_ARTIFACTS", ""),
                          description="empty: the local filesystem under root; s3://bucket/prefix: S3")
    endpoint_url: str | None = None
    region_name: str | None = None
    profile_name: str | None = None
    max_attempts: int = Field(default=5, ge=0, description="botocore's retries of each request (standard mode)")
    multipart_mib: int = Field(default=16, ge=5, description="files above this go up in parts of this size (S3 "
                                                             "parts are at least 5 MiB) and come down in ranges")
    retry_attempts: int = Field(default=4, ge=1, description="tries of a whole transfer that fails transiently")
    retry_delay_s: float = Field(default=0.5, ge=0.0, description="first backoff; it doubles each retry")

    def store(self) -> ArtifactStore:
        chunk = self.multipart_mib * 2**20
        return open_artifact_store(
            self.root, self.location,
            lambda: S3Resource(endpoint_url=self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
                               region_name=self.region_name or os.environ.get("AWS_REGION"),
                               profile_name=self.profile_name, max_attempts=self.max_attempts).get_client(),
            TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk),
            RetryPolicy(attempts=self.retry_attempts, base_delay_s=self.retry_delay_s))


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


def _env(name: str, default: str = "") -> str:
    return os.environ.get(f"MICRODRAMA_{name}", default)


def _from_env(name: str, default: str = "", about: str | None = None):
    """A setting whose default is read from MICRODRAMA_<name> when the resource is made."""
    return Field(default_factory=lambda: _env(name, default), description=about)


class BackendSettings(ConfigurableResource):
    """Which backend implements each stage (``embedded`` needs no model weights) and, for the model-backed ones,
    the local model each loads. Unset fields come from MICRODRAMA_<STAGE>_BACKEND and MICRODRAMA_<FIELD> (e.g.
    MICRODRAMA_KEYFRAMES_BACKEND=diffusers, MICRODRAMA_KEYFRAMES_MODEL=/models/sdxl)."""

    planner: str = _from_env("PLANNER_BACKEND", "embedded")
    keyframes: str = _from_env("KEYFRAMES_BACKEND", "embedded")
    voice: str = _from_env("VOICE_BACKEND", "embedded")
    motion: str = _from_env("MOTION_BACKEND", "embedded")
    lipsync: str = _from_env("LIPSYNC_BACKEND", "embedded")
    planner_model: str = _from_env("PLANNER_MODEL", about="a transformers causal LM directory (config, weights, "
                                                           "tokenizer)")
    keyframes_model: str = _from_env("KEYFRAMES_MODEL", about="a diffusers SDXL or SD 1.5 pipeline directory")
    keyframes_controlnet: str = _from_env("KEYFRAMES_CONTROLNET", about="a diffusers OpenPose ControlNet directory")
    keyframes_adapter: str = _from_env("KEYFRAMES_ADAPTER", about="optional IP-Adapter weights file (its CLIP image "
                                                                   "encoder in image_encoder/ beside it)")
    keyframes_size: str = _from_env("KEYFRAMES_SIZE", about="generation WxH (multiples of 8); empty: 768x1344 SDXL, "
                                                             "512x896 SD 1.5")
    keyframes_steps: int = Field(default_factory=lambda: int(_env("KEYFRAMES_STEPS", "0")), ge=0,
                                 description="denoising steps; 0: 30")
    voice_model: str = _from_env("VOICE_MODEL", about="a Coqui TTS model directory (config.json and checkpoint)")
    motion_model: str = _from_env("MOTION_MODEL", about="a Practical-RIFE train_log directory holding flownet.pkl")
    lipsync_model: str = _from_env("LIPSYNC_MODEL", about="a Wav2Lip checkpoint (wav2lip_gan.pth or wav2lip.pth, "
                                                           "optional config.json) or the directory holding it")
    device: str = _from_env("DEVICE", "auto", about="auto (CUDA when present, else CPU), cpu, or cuda[:N]")

    def model_settings(self) -> ModelSettings:
        # The batch divisor is not configured: a retry after a GPU out-of-memory error sets it (``_build``).
        return ModelSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ModelSettings)
                                if f.name in type(self).model_fields})

    def _build(self, stage: str, placement: ModelPlacement | None):
        """The backend chosen for one stage (a model-backed one imports the ML extra only now), on the device and
        batch of this attempt's ``placement`` when given (a retry after the GPU ran out of memory moves it)."""
        registry = STAGE_BACKENDS[stage]
        name = getattr(self, stage)
        if name not in registry:
            raise ValueError(f"unknown {stage} backend {name!r}; available: {sorted(registry)}")
        settings = self.model_settings()
        if placement is not None:
            settings = dataclasses.replace(settings, device=placement.device, batch_divisor=placement.batch_divisor)
        return registry[name](settings)

    def planner_backend(self, placement: ModelPlacement | None = None) -> PlannerBackend:
        return self._build("planner", placement)

    def keyframes_backend(self, placement: ModelPlacement | None = None) -> KeyframeBackend:
        return self._build("keyframes", placement)

    def voice_backend(self, placement: ModelPlacement | None = None) -> VoiceBackend:
        return self._build("voice", placement)

    def motion_backend(self, placement: ModelPlacement | None = None) -> MotionBackend:
        return self._build("motion", placement)

    def lipsync_backend(self, placement: ModelPlacement | None = None) -> LipSyncBackend:
        return self._build("lipsync", placement)



class TrustSettings(ConfigurableResource):
    """Moderation and provenance: the moderation policy (empty: the shipped default, trust/policy/default.json),
    optional local transformers classifiers for text and images, and the C2PA signing identity. Unset fields come
    from MICRODRAMA_MODERATION_POLICY, MICRODRAMA_MODERATION_TEXT_MODEL, MICRODRAMA_MODERATION_IMAGE_MODEL and
    MICRODRAMA_C2PA_CERT / _KEY / _ALG / _TSA; without a certificate and key nothing is C2PA-signed (the files
    still say they are synthetic, and keyframes still carry the watermark)."""

    moderation_policy: str = _from_env("MODERATION_POLICY", about="a moderation policy JSON file (see "
                                                                   "trust/moderation.py load_policy)")
    moderation_text_model: str = _from_env("MODERATION_TEXT_MODEL", about="a transformers sequence-classification "
                                                                           "model directory")
    moderation_image_model: str = _from_env("MODERATION_IMAGE_MODEL", about="a transformers image-classification "
                                                                             "model directory")
    c2pa_cert: str = _from_env("C2PA_CERT", about="PEM certificate chain, the signing certificate first")
    c2pa_key: str = _from_env("C2PA_KEY", about="PEM private key of the signing certificate")
    c2pa_alg: str = _from_env("C2PA_ALG", "es256", about="es256, es384, es512, ps256, ps384, ps512 or ed25519")
    c2pa_tsa: str = _from_env("C2PA_TSA", about="optional RFC 3161 time-stamp authority URL")
    device: str = _from_env("DEVICE", "auto", about="where the classifiers run: auto, cpu, or cuda[:N]")

    def policy(self) -> ModerationPolicy:
        return load_policy(self.moderation_policy or None)

    def moderation_fingerprint(self) -> str:
        """What judges content: the policy and the classifiers' weights. A verdict made under another is stale."""
        parts = [self.policy().model_dump_json()]
        parts += [weights_sha256(model) for model in (self.moderation_text_model, self.moderation_image_model) if model]
        return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()

    def text_classifier(self) -> TextClassifier | None:
        if not self.moderation_text_model:
            return None
        from .ml.moderation_classifiers import TransformersTextModeration

        return TransformersTextModeration(self.moderation_text_model, self.device)

    def image_classifier(self) -> ImageClassifier | None:
        if not self.moderation_image_model:
            return None
        from .ml.moderation_classifiers import TransformersImageModeration

        return TransformersImageModeration(self.moderation_image_model, self.device)

    def signer(self) -> str:
        """Who signs (a hash of the certificate chain), for cache keys; empty when nothing is signed."""
        return signer_fingerprint(self.signing_identity())

    def signing_identity(self) -> SigningIdentity | None:
        """The checked C2PA signing identity, or None when signing is not configured."""
        return SigningIdentity.from_env({ENV_CERT: self.c2pa_cert, ENV_KEY: self.c2pa_key, ENV_ALG: self.c2pa_alg,
                                         ENV_TSA: self.c2pa_tsa})


class AnalyticsSettings(ConfigurableResource):
    """Where playback events are stored: MICRODRAMA_EVENTS (a DuckDB file or a postgresql:// URL), else
    analytics/events.duckdb under the data root (MICRODRAMA_DATA): the collector, the preview page, the simulator
    and engagement_metrics all use this one location."""

    events: str = Field(default_factory=default_events_location,
                        description="a DuckDB file path or a postgresql:// URL")

"""C2PA Content Credentials for published episodes: a signed statement that the media is synthetic, which models
made it (with their weights' SHA-256), the SHA-256 of the prompts (never the prompts: they may hold private
text), the seeds and the steps applied; and reading it back with its validation.

What gets signed (c2pa-python 0.38.1, c2pa-rs 0.91):

- ``master.mp4`` and ``poster.jpg``: the manifest is embedded (``sign_file``), hard-bound to the file's bytes.
- The HLS package: c2pa-rs will embed a manifest in a lone fMP4 init segment, but its hash then covers the init
  segment alone, and a validator given the media segments reports them as mismatched (the fragmented-MP4
  signer, with its Merkle trees, is not in the C API that c2pa-python wraps). So every rendition's init segment
  stays as it is and gets a detached manifest store beside it, ``init.c2pa`` (``sign_hls_package``), bound to the
  init segment's bytes and carrying a signed list of the SHA-256 of the rendition's other files (segments and
  playlists), which ``read_provenance`` checks.
- Not signed: the master playlist and the WebVTT files (text, for which C2PA defines no binding).

The signing key and certificate chain are the operator's (``SigningIdentity``, from the ``MICRODRAMA_C2PA_*``
environment variables). Plain functions, free of Dagster.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from ..audit import ModelCall, prompt_sha256
from ..media.manifest import EpisodeManifest
from ..media.video_io import SYNTHETIC_ORIGIN_METADATA, SYNTHETIC_SOURCE_TYPE
from ..storage import sha256_of

ENV_CERT = "MICRODRAMA_C2PA_CERT"  # PEM certificate chain: the signing certificate first, then intermediates
ENV_KEY = "MICRODRAMA_C2PA_KEY"  # PEM private key of the signing certificate (unencrypted PKCS#8 or traditional)
ENV_ALG = "MICRODRAMA_C2PA_ALG"  # es256 (default), es384, es512, ps256, ps384, ps512 or ed25519
ENV_TSA = "MICRODRAMA_C2PA_TSA"  # optional RFC 3161 time-stamp authority URL

GENERATION_LABEL = "org.microdrama.generation"
RENDITION_FILES_LABEL = "org.microdrama.rendition-files"
SIDECAR_SUFFIX = ".c2pa"
INIT_SEGMENT = "init.mp4"
_SHA256_HEX = r"^[0-9a-f]{64}$"
_MIME_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".m4a": "audio/mp4", ".jpg": "image/jpeg",
               ".jpeg": "image/jpeg", ".png": "image/png"}
# The key each algorithm signs with: (key class, EC curve or None).
_ALGORITHM_KEYS = {
    "es256": (ec.EllipticCurvePrivateKey, ec.SECP256R1), "es384": (ec.EllipticCurvePrivateKey, ec.SECP384R1),
    "es512": (ec.EllipticCurvePrivateKey, ec.SECP521R1), "ps256": (rsa.RSAPrivateKey, None),
    "ps384": (rsa.RSAPrivateKey, None), "ps512": (rsa.RSAPrivateKey, None),
    "ed25519": (ed25519.Ed25519PrivateKey, None),
}
# Reading is offline: no remote manifests, no OCSP; trust comes from the anchors the caller passes.
_READ_SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
# No thumbnail in the manifest: the poster is the episode's picture, and a thumbnail would add its own JPEG to
# every signed file.
_SIGN_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}, **_READ_SETTINGS}

# The steps an episode goes through after its elements are generated, as C2PA actions. No step uses
# c2pa.watermarked: c2pa-rs requires a soft-binding assertion with it, whose algorithm must come from C2PA's
# registered list, which this watermark is not on.
STEP_ACTIONS: dict[str, tuple[str, str]] = {
    "lip_synced": ("c2pa.edited", "Mouth shapes redrawn to follow the synthetic speech (lip sync)"),
    "graded": ("c2pa.color_adjustments", "Colour grade for the shot's mood"),
    "captioned": ("c2pa.edited", "Dialogue captions burned into the picture"),
    "labelled": ("c2pa.edited", "Visible 'AI-generated' label drawn on every frame"),
    "watermarked": ("c2pa.edited", "Invisible watermark in the keyframes (DWT-DCT, carrying the episode digest)"),
    "mixed": ("c2pa.edited", "Dialogue, music and effects mixed and loudness-normalised"),
    "encoded": ("c2pa.transcoded", "Encoded for delivery (H.264/HEVC/AV1 video, AAC audio, JPEG poster)"),
    "packaged": ("c2pa.repackaged", "Shots joined into one file or cut into CMAF segments without re-encoding"),
}
EPISODE_STEPS = ("lip_synced", "graded", "captioned", "mixed", "encoded", "packaged")


class ProvenanceError(ValueError):
    """Content credentials that cannot be made, signed or read; the message says why."""


class SigningIdentityError(ProvenanceError):
    """A signing key, certificate chain, algorithm or TSA URL that cannot be used; the message says which."""


class ManifestNotFoundError(ProvenanceError):
    """A file with no C2PA manifest, neither embedded nor in a sidecar beside it."""


# --- the manifest -------------------------------------------------------------------------------------------------
class ModelUse(BaseModel):
    """One model (or embedded backend) that made part of the episode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str = Field(min_length=1)  # planner, keyframes, voice, motion, lipsync
    backend: str = Field(min_length=1)
    model: str = ""  # the model file's or folder's name: a full local path would expose the operator's disks
    weights_sha256: str | None = Field(default=None, pattern=_SHA256_HEX)  # None: an embedded backend, no weights

    @field_validator("model")
    @classmethod
    def _name_only(cls, value: str) -> str:
        return Path(value).name if value else ""

    @field_validator("weights_sha256", mode="before")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None


class GenerationAssertion(BaseModel):
    """The ``org.microdrama.generation`` assertion: what generated the episode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    episode_id: str = Field(min_length=1)
    models: list[ModelUse]
    prompt_sha256: list[str]
    seeds: list[int] = []

    @field_serializer("seeds")
    def _seeds_as_text(self, seeds: list[int]) -> list[str]:
        # c2pa-rs (0.91) reports any array of numbers as a byte string, each number cut to 8 bits
        # (contentauth/c2pa-rs#2570): as decimal strings they read back whole, and validate back to ints.
        return [str(seed) for seed in seeds]

    @field_validator("prompt_sha256")
    @classmethod
    def _hashes_only(cls, hashes: list[str]) -> list[str]:
        for index, value in enumerate(hashes):
            if not re.fullmatch(_SHA256_HEX, value):
                raise ValueError(f"prompt_sha256[{index}] is not a lowercase SHA-256 hex digest; pass "
                                 "audit.prompt_sha256(prompt), never the prompt itself")
        return list(dict.fromkeys(hashes))


def generation_inputs(calls: Iterable[ModelCall | Mapping]) -> tuple[list[dict], list[str], list[int]]:
    """(models, prompt hashes, seeds) for ``provenance_manifest`` from the model calls the backends reported
    (``ModelCall`` or its dict, as the audit log keeps it); each distinct model once, in first-use order."""
    models, prompts, seeds = {}, [], []
    for call in calls:
        record = call.as_dict() if isinstance(call, ModelCall) else dict(call)
        use = ModelUse(stage=record["stage"], backend=record["backend"], model=record.get("model") or "",
                       weights_sha256=record.get("weights_sha256"))
        models.setdefault(use, None)
        if record.get("prompt"):
            prompts.append(prompt_sha256(record["prompt"]))
        if record.get("seed") is not None:
            seeds.append(int(record["seed"]))
    return ([use.model_dump() for use in models], list(dict.fromkeys(prompts)), list(dict.fromkeys(seeds)))


def episode_provenance_manifest(manifest: EpisodeManifest, audit_events: Iterable[Mapping],
                                steps: Sequence[str] = EPISODE_STEPS) -> dict:
    """The C2PA manifest for a file of an episode from its audit log: for each asset and partition, the backend
    and model calls of the latest render (the one that made the artifact in place; earlier takes are history),
    the logline's hash as the first prompt, and the manifest's seeds."""
    latest: dict[tuple[str, str], Mapping] = {}
    for event in audit_events:
        if event.get("kind") == "render":
            latest[(event["asset"], event["partition"])] = event
    calls = []
    for (asset, _), event in sorted(latest.items()):
        # An embedded backend calls no model; it is listed by name, with no weights.
        calls += event["calls"] or [{"stage": asset, "backend": event["backend"], "model": "", "prompt": ""}]
    models, prompt_hashes, seeds = generation_inputs(calls)
    return provenance_manifest(manifest.title, manifest.episode_id, models,
                               [prompt_sha256(manifest.logline), *prompt_hashes],
                               list(dict.fromkeys([manifest.seed, *(shot.seed for shot in manifest.shots), *seeds])),
                               steps)


def _microdrama_version() -> str:
    return importlib.metadata.version("microdrama")


def provenance_manifest(title: str, episode_id: str, models: Sequence[Mapping], prompt_hashes: Sequence[str],
                        seeds: Sequence[int] = (), steps: Sequence[str] = EPISODE_STEPS) -> dict:
    """The C2PA manifest definition for a file of an episode.

    Actions: ``c2pa.created`` with the IPTC digital source type ``compositeSynthetic`` (the episode is a composite
    of elements that are all synthetic: keyframes, motion, voices and music, some from trained models and some
    procedural; ``trainedAlgorithmicMedia`` would misdescribe the procedural parts and the embedded backends,
    which use no trained model), then one action per step in ``steps`` (keys of ``STEP_ACTIONS``, in the order
    they were applied). The ``org.microdrama.generation`` assertion lists ``models`` (dicts with stage, backend,
    model, weights_sha256), ``prompt_hashes`` (SHA-256 hex digests) and ``seeds``.
    """
    if not title.strip():
        raise ProvenanceError("manifest title is empty")
    unknown = [step for step in steps if step not in STEP_ACTIONS]
    if unknown:
        raise ProvenanceError(f"unknown step {unknown[0]!r}; choose from {', '.join(STEP_ACTIONS)}")
    try:
        generation = GenerationAssertion(episode_id=episode_id, models=[ModelUse(**dict(m)) for m in models],
                                         prompt_sha256=list(prompt_hashes), seeds=list(seeds))
    except (ValidationError, TypeError) as error:
        raise ProvenanceError(f"generation record for episode {episode_id!r} is invalid: {error}") from error
    version = _microdrama_version()
    created = {
        "action": "c2pa.created",
        "digitalSourceType": SYNTHETIC_SOURCE_TYPE,
        "softwareAgent": {"name": "microdrama", "version": version},
        "description": "Episode generated from a logline: shot plan, keyframes, motion, voices and music",
    }
    actions = [created] + [{"action": STEP_ACTIONS[step][0], "description": STEP_ACTIONS[step][1]}
                           for step in steps]
    return {
        "claim_generator_info": [{"name": "microdrama", "version": version}],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {"label": GENERATION_LABEL, "data": generation.model_dump()},
        ],
    }


def delivery_disclosure(content_credentials: Sequence[str], visible_label: bool,
                        watermarked: Sequence[str]) -> dict:
    """The synthetic-origin block for delivery.json: that the media is AI-generated, its IPTC digital source type,
    whether it carries the visible label, what carries the invisible watermark (it is embedded in the keyframes;
    motion and small renditions do not keep it in the video frames), and which files (package-relative paths)
    carry C2PA Content Credentials."""
    return {
        "ai_generated": True,
        "statement": SYNTHETIC_ORIGIN_METADATA["comment"],
        "digital_source_type": SYNTHETIC_SOURCE_TYPE,
        "visible_label": visible_label,
        "invisible_watermark": sorted(watermarked),
        "content_credentials": sorted(content_credentials),
    }


# --- the signing identity -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SigningIdentity:
    """Where the operator's C2PA signing certificate chain and private key are, and how to sign with them."""

    cert_chain: Path
    private_key: Path
    algorithm: str = "es256"
    tsa_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SigningIdentity | None:
        """The identity the ``MICRODRAMA_C2PA_*`` variables name, checked (``load``); None when neither the
        certificate nor the key is set, i.e. signing is not configured."""
        environ = os.environ if environ is None else environ
        cert, key = environ.get(ENV_CERT, "").strip(), environ.get(ENV_KEY, "").strip()
        if not cert and not key:
            return None
        if not cert or not key:
            given, missing = (ENV_CERT, ENV_KEY) if cert else (ENV_KEY, ENV_CERT)
            raise SigningIdentityError(f"{given} is set but {missing} is not: C2PA signing needs both the "
                                       "certificate chain and its private key")
        identity = cls(Path(cert), Path(key), environ.get(ENV_ALG, "").strip().lower() or "es256",
                       environ.get(ENV_TSA, "").strip() or None)
        identity.load()
        return identity

    def load(self) -> tuple[bytes, bytes]:
        """(certificate chain PEM, private key PEM), checked: readable, parseable, the algorithm fits the key, the
        key belongs to the first certificate, which is in its validity period and not a CA."""
        if self.algorithm not in _ALGORITHM_KEYS:
            raise SigningIdentityError(f"unknown C2PA signing algorithm {self.algorithm!r}; "
                                       f"choose one of {', '.join(_ALGORITHM_KEYS)}")
        if self.tsa_url is not None and not self.tsa_url.startswith(("http://", "https://")):
            raise SigningIdentityError(f"time-stamp authority URL {self.tsa_url!r} is not an http(s) URL")
        chain_pem, key_pem = _read(self.cert_chain, "certificate chain"), _read(self.private_key, "private key")
        try:
            chain = x509.load_pem_x509_certificates(chain_pem)
        except ValueError as error:
            raise SigningIdentityError(f"{self.cert_chain} is not a PEM certificate chain: {error}") from error
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except TypeError as error:
            raise SigningIdentityError(f"{self.private_key} is encrypted; give an unencrypted PEM key "
                                       "(keep it readable by this process only)") from error
        except ValueError as error:
            raise SigningIdentityError(f"{self.private_key} is not a PEM private key: {error}") from error
        key_class, curve = _ALGORITHM_KEYS[self.algorithm]
        if not isinstance(key, key_class) or (curve is not None and not isinstance(key.curve, curve)):
            raise SigningIdentityError(f"{self.private_key} holds a {_describe_key(key)} key, which cannot sign "
                                       f"{self.algorithm}; set {ENV_ALG} to match the key")
        leaf = chain[0]
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if (key.public_key().public_bytes(serialization.Encoding.DER, public)
                != leaf.public_key().public_bytes(serialization.Encoding.DER, public)):
            raise SigningIdentityError(f"the private key {self.private_key} does not belong to the first "
                                       f"certificate of {self.cert_chain} ({leaf.subject.rfc4514_string()})")
        now = datetime.datetime.now(datetime.timezone.utc)
        if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            raise SigningIdentityError(f"signing certificate {leaf.subject.rfc4514_string()} is valid from "
                                       f"{leaf.not_valid_before_utc:%Y-%m-%d} to {leaf.not_valid_after_utc:%Y-%m-%d}, "
                                       "not now")
        try:
            is_ca = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if is_ca:
            raise SigningIdentityError(f"the first certificate of {self.cert_chain} is a CA certificate; C2PA signs "
                                       "with an end-entity certificate")
        return chain_pem, key_pem

    def signer(self) -> c2pa.Signer:
        """A c2pa Signer for this identity, checked by ``load`` first; the caller closes it."""
        chain_pem, key_pem = self.load()
        try:
            return c2pa.Signer.from_info(c2pa.C2paSignerInfo(self.algorithm.encode(), chain_pem, key_pem,
                                                             self.tsa_url))
        except c2pa.C2paError as error:
            raise SigningIdentityError(f"c2pa refused the signing identity {self.cert_chain}: {error}") from error


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise SigningIdentityError(f"cannot read the C2PA {what} {path}: {error.strerror or error}") from error


def _describe_key(key) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA-{key.key_size}"
    return type(key).__name__.removeprefix("_").replace("PrivateKey", "")


# --- signing ------------------------------------------------------------------------------------------------------
def _mime_type(path: Path) -> str:
    mime = _MIME_TYPES.get(path.suffix.lower())
    if mime is None:
        raise ProvenanceError(f"{path}: cannot carry C2PA credentials here; supported: {', '.join(_MIME_TYPES)}")
    return mime


def _builder(manifest: Mapping) -> c2pa.Builder:
    try:
        return c2pa.Builder(dict(manifest), context=c2pa.Context.from_dict(_SIGN_SETTINGS))
    except c2pa.C2paError as error:
        raise ProvenanceError(f"c2pa rejected the manifest definition: {error}") from error


def _write_atomically(destination: Path, write) -> None:
    """Call ``write(handle)`` on a temporary file beside ``destination``, then move it into place."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
    try:
        with temporary.open("w+b") as handle:
            write(handle)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def signer_fingerprint(identity: SigningIdentity | None) -> str:
    """Who signs, for cache keys: a hash of the certificate chain (empty when nothing is signed)."""
    return "" if identity is None else sha256_of(identity.cert_chain)[:16]


def sign_file(source: Path, destination: Path, manifest: Mapping, identity: SigningIdentity) -> None:
    """Write ``source`` with ``manifest`` signed and embedded to ``destination`` (MP4, M4A, JPEG or PNG; may be
    ``source`` itself), atomically. A manifest already in ``source`` is replaced, not kept as an ingredient."""
    source, destination = Path(source), Path(destination)
    mime = _mime_type(source)
    signer = identity.signer()

    def write(handle) -> None:
        with source.open("rb") as original:
            _builder(manifest).sign(signer, mime, original, handle)

    try:
        _write_atomically(destination, write)
    except c2pa.C2paError as error:
        raise ProvenanceError(f"C2PA signing of {source} failed: {error}") from error
    finally:
        signer.close()


def sidecar_path(asset: Path) -> Path:
    """Where an asset's detached manifest store lives: beside it, ``.c2pa`` for its suffix."""
    return Path(asset).with_suffix(SIDECAR_SUFFIX)


def sign_sidecar(asset: Path, manifest: Mapping, identity: SigningIdentity) -> Path:
    """Sign ``manifest`` bound to ``asset``'s bytes as they are, into a detached manifest store beside it
    (``sidecar_path``), written atomically; ``asset`` is not changed. Returns the sidecar's path."""
    asset = Path(asset)
    mime = _mime_type(asset)
    builder = _builder(manifest)
    builder.set_no_embed()
    signer = identity.signer()
    try:
        # The builder still writes the asset out; a temporary file keeps a large one out of memory.
        with asset.open("rb") as original, tempfile.TemporaryFile() as discarded:
            store = builder.sign(signer, mime, original, discarded)
    except c2pa.C2paError as error:
        raise ProvenanceError(f"C2PA signing of a sidecar for {asset} failed: {error}") from error
    finally:
        signer.close()
    sidecar = sidecar_path(asset)
    _write_atomically(sidecar, lambda handle: handle.write(store))
    return sidecar


def sign_hls_package(package_dir: Path, manifest: Mapping, identity: SigningIdentity) -> list[Path]:
    """A sidecar (``init.c2pa``) for every rendition of an HLS package: ``manifest`` bound to the rendition's init
    segment, plus the ``org.microdrama.rendition-files`` assertion with the SHA-256 of each of the rendition's
    other files. Sign after the package is complete: a file changed or added later fails ``read_provenance``.
    Returns the sidecars' paths."""
    package_dir = Path(package_dir)
    init_segments = sorted(package_dir.rglob(INIT_SEGMENT))
    if not init_segments:
        raise ProvenanceError(f"{package_dir} holds no {INIT_SEGMENT}: not an fMP4 HLS package")
    sidecars = []
    for init in init_segments:
        files = [{"name": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size}
                 for path in sorted(init.parent.iterdir())
                 if path.is_file() and path != init and path.suffix != SIDECAR_SUFFIX]
        rendition_manifest = {**manifest, "assertions": [*manifest.get("assertions", []),
                                                         {"label": RENDITION_FILES_LABEL, "data": {"files": files}}]}
        sidecars.append(sign_sidecar(init, rendition_manifest, identity))
    return sidecars


# --- reading ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProvenanceReport:
    """A file's C2PA manifest as read back, with c2pa-rs's validation and, for an HLS rendition, the check of its
    files against the signed list."""

    path: Path
    embedded: bool  # False: read from the sidecar beside the file
    manifest_store: dict  # the whole store as c2pa-rs reports it (manifests, validation results)
    manifest: dict  # the active manifest
    validation_state: str | None  # c2pa-rs: Trusted, Valid (signature and hashes fine, signer not trusted), Invalid
    failures: list[dict]  # c2pa-rs failure entries (code, explanation, url) of the active manifest and ingredients
    generation: GenerationAssertion | None
    actions: list[dict]
    rendition_file_problems: list[str] = field(default_factory=list)

    @property
    def failure_codes(self) -> list[str]:
        return [failure.get("code", "") for failure in self.failures]

    @property
    def digital_source_type(self) -> str | None:
        return next((action.get("digitalSourceType") for action in self.actions
                     if action.get("action") == "c2pa.created"), None)

    @property
    def trusted(self) -> bool:
        """Signed by a trusted certificate, every hash matching, every rendition file as signed."""
        return self.validation_state == "Trusted" and not self.failures and not self.rendition_file_problems


def read_provenance(path: Path, trust_anchors_pem: str | None = None) -> ProvenanceReport:
    """Read and validate ``path``'s C2PA manifest: embedded, or else in its sidecar (``sidecar_path``).
    ``trust_anchors_pem``: the root certificates (PEM) to trust; without them a well-signed file reads as Valid
    with the failure ``signingCredential.untrusted``. Offline: no OCSP, no remote manifests."""
    path = Path(path)
    mime = _mime_type(path)
    settings = dict(_READ_SETTINGS)
    if trust_anchors_pem:
        settings["trust"] = {"user_anchors": trust_anchors_pem}
    sidecar = sidecar_path(path)
    try:
        context = c2pa.Context.from_dict(settings)
        with path.open("rb") as stream:
            reader = c2pa.Reader.try_create(mime, stream, None, context)
            embedded = reader is not None
            if reader is None and sidecar.is_file():
                stream.seek(0)
                reader = c2pa.Reader(mime, stream, sidecar.read_bytes(), context)
            if reader is None:
                raise ManifestNotFoundError(f"{path} has no C2PA manifest, embedded or in {sidecar.name}")
            with reader:
                store = json.loads(reader.json())
    except c2pa.C2paError as error:
        raise ProvenanceError(f"cannot read the C2PA manifest of {path}: {error}") from error
    except OSError as error:
        raise ProvenanceError(f"cannot read {path}: {error.strerror or error}") from error
    manifest = store["manifests"][store["active_manifest"]]
    results = store.get("validation_results") or {}
    failures = list((results.get("activeManifest") or {}).get("failure", []))
    for delta in results.get("ingredientDeltas", []):
        failures.extend((delta.get("validationDeltas") or {}).get("failure", []))
    assertions = {assertion["label"]: assertion.get("data", {}) for assertion in manifest.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions", [])
    try:
        generation = (GenerationAssertion.model_validate(assertions[GENERATION_LABEL])
                      if GENERATION_LABEL in assertions else None)
    except ValidationError as error:
        raise ProvenanceError(f"{path}: the {GENERATION_LABEL} assertion is malformed: {error}") from error
    problems = (_rendition_file_problems(path.parent, assertions[RENDITION_FILES_LABEL]["files"])
                if RENDITION_FILES_LABEL in assertions else [])
    return ProvenanceReport(path=path, embedded=embedded, manifest_store=store, manifest=manifest,
                            validation_state=store.get("validation_state"), failures=failures,
                            generation=generation, actions=actions, rendition_file_problems=problems)


def _rendition_file_problems(directory: Path, signed: list[dict]) -> list[str]:
    problems = []
    listed = set()
    for entry in signed:
        name = entry["name"]
        listed.add(name)
        path = directory / name
        if Path(name).name != name:
            problems.append(f"{name!r} is not a plain file name")
        elif not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_of(path) != entry["sha256"]:
            problems.append(f"{name} changed since it was signed")
    for path in sorted(directory.iterdir()):
        if (path.is_file() and path.name not in listed and path.name != INIT_SEGMENT
                and path.suffix != SIDECAR_SUFFIX):
            problems.append(f"{path.name} was added after signing")
    return problems

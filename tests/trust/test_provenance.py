"""Synthetic-origin metadata in published MP4s, and C2PA Content Credentials signed, read back and validated on a
real master MP4, a JPEG poster and an fMP4 HLS package."""

from __future__ import annotations

import json
import shutil

import av
import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from microdrama_assets.audit import ModelCall, prompt_sha256
from microdrama_assets.media.hls import (
    INIT_SEGMENT,
    PRESETS,
    Rung,
    assemble_video_rendition,
    encode_audio_hls,
    encode_audio_m4a,
    encode_shot_renditions,
    ladder_variants,
    video_codecs,
)
from microdrama_assets.media.video_io import (
    SYNTHETIC_ORIGIN_METADATA,
    SYNTHETIC_SOURCE_TYPE,
    MezzanineSettings,
    decode_frames,
    probe_video,
    remux_master,
    write_mezzanine,
)
from microdrama_assets.storage import sha256_of
from microdrama_assets.trust.provenance import (
    ENV_ALG,
    ENV_CERT,
    ENV_KEY,
    ENV_TSA,
    GENERATION_LABEL,
    ManifestNotFoundError,
    ProvenanceError,
    SigningIdentity,
    SigningIdentityError,
    delivery_disclosure,
    generation_inputs,
    provenance_manifest,
    read_provenance,
    sidecar_path,
    sign_file,
    sign_hls_package,
)

from .conftest import make_test_signing

WIDTH, HEIGHT, FRAMES = 96, 160, 30
TINY_RUNG = Rung("160p", WIDTH, HEIGHT, 150, 200)
WEIGHTS = "ab" * 32
MODELS = [
    {"stage": "keyframes", "backend": "diffusers", "model": "/home/operator/models/sdxl-turbo", "weights_sha256": WEIGHTS},
    {"stage": "voice", "backend": "espeak", "model": "", "weights_sha256": ""},
]
PROMPTS = [prompt_sha256("a barista at night, rain on the window"), prompt_sha256("close-up, the locket glows")]


def _frames(seed: int):
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8), (0, 0), 3)
    return [np.roll(base, 2 * i, axis=1) for i in range(FRAMES)]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A real episode master (two shots stream-copied with an AAC mix), a JPEG poster and a one-rung HLS package
    (video and audio renditions), all written by the project's own writers."""
    root = tmp_path_factory.mktemp("media")
    shots = []
    for index in range(2):
        path = root / f"s0{index + 1}.mp4"
        write_mezzanine(path, _frames(index), WIDTH, HEIGHT, MezzanineSettings())
        shots.append(path)
    seconds = 2 * FRAMES / 30
    t = np.arange(int(48000 * seconds)) / 48000
    tone = np.stack([0.2 * np.sin(2 * np.pi * 440 * t)] * 2, 1).astype(np.float32)
    encode_audio_m4a(tone, 48000, root / "mix.m4a")
    remux_master(shots, [FRAMES, FRAMES], root / "mix.m4a", root / "master.mp4")
    poster = root / "poster.jpg"
    poster.write_bytes(cv2.imencode(".jpg", _frames(0)[0], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    variant = ladder_variants(video_codecs([]), (TINY_RUNG,))[0]
    rendition = encode_shot_renditions(decode_frames(shots[0]), FRAMES, 0, root / "s01", PRESETS["draft"],
                                       (variant,))[variant.key]
    package = root / "hls"
    assemble_video_rendition([("s01", root / "s01" / variant.key, rendition)], package, variant)
    encode_audio_hls(tone, 48000, package / "audio", 2.0, 64)
    return root


@pytest.fixture(scope="module")
def manifest():
    return provenance_manifest("The Locket, episode 1", "ep-locket-1", MODELS, PROMPTS, seeds=[7, 11])


def _working_copy(media, tmp_path, name: str):
    copy = tmp_path / name
    shutil.copy(media / name, copy)
    return copy


def test_published_mp4s_and_init_segments_say_they_are_synthetic(media):
    for path in (media / "master.mp4", media / "hls" / "video" / "h264" / "160p" / INIT_SEGMENT,
                 media / "hls" / "audio" / INIT_SEGMENT):
        with av.open(str(path)) as container:
            metadata = dict(container.metadata)
        for key, text in SYNTHETIC_ORIGIN_METADATA.items():
            assert metadata.get(key) == text, f"{path.name}: {key}"
    assert "AI-generated" in SYNTHETIC_ORIGIN_METADATA["comment"]
    assert SYNTHETIC_SOURCE_TYPE in SYNTHETIC_ORIGIN_METADATA["description"]


def test_manifest_definition_lists_models_prompt_hashes_and_actions(manifest):
    actions = manifest["assertions"][0]["data"]["actions"]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"] == SYNTHETIC_SOURCE_TYPE
    assert [a["action"] for a in actions[1:]] == ["c2pa.edited", "c2pa.color_adjustments", "c2pa.edited",
                                                  "c2pa.edited", "c2pa.transcoded", "c2pa.repackaged"]
    generation = manifest["assertions"][1]
    assert generation["label"] == GENERATION_LABEL
    assert generation["data"]["models"] == [
        {"stage": "keyframes", "backend": "diffusers", "model": "sdxl-turbo", "weights_sha256": WEIGHTS},
        {"stage": "voice", "backend": "espeak", "model": "", "weights_sha256": None},
    ]  # the model's name, not the operator's path
    assert generation["data"]["prompt_sha256"] == PROMPTS and generation["data"]["seeds"] == ["7", "11"]


def test_manifest_refuses_prompt_text_and_unknown_steps():
    with pytest.raises(ProvenanceError, match="never the prompt itself"):
        provenance_manifest("T", "ep", MODELS, ["a barista at night"])
    with pytest.raises(ProvenanceError, match="unknown step 'sharpened'"):
        provenance_manifest("T", "ep", MODELS, PROMPTS, steps=["graded", "sharpened"])
    with pytest.raises(ProvenanceError, match="weights_sha256"):
        provenance_manifest("T", "ep", [{"stage": "voice", "backend": "x", "weights_sha256": "not-a-hash"}], [])


def test_generation_inputs_from_model_calls_keep_hashes_not_prompts():
    calls = [ModelCall("keyframes", "diffusers", "/models/sdxl", WEIGHTS, "cpu", 7, "secret prompt one"),
             ModelCall("keyframes", "diffusers", "/models/sdxl", WEIGHTS, "cpu", 8, "secret prompt two"),
             ModelCall("voice", "coqui", "/models/xtts", "cd" * 32, "cpu", 7, "secret prompt one").as_dict()]
    models, prompts, seeds = generation_inputs(calls)
    assert [m["model"] for m in models] == ["sdxl", "xtts"]
    assert prompts == [prompt_sha256("secret prompt one"), prompt_sha256("secret prompt two")]
    assert seeds == [7, 8]
    assert "secret" not in json.dumps(provenance_manifest("T", "ep", models, prompts, seeds))


def test_signed_master_reads_back_trusted_with_its_generation_record(media, manifest, c2pa_identity, tmp_path):
    master = _working_copy(media, tmp_path, "master.mp4")
    signed = tmp_path / "signed.mp4"
    sign_file(master, signed, manifest, c2pa_identity.identity)
    report = read_provenance(signed, c2pa_identity.root_pem)
    assert report.embedded and report.validation_state == "Trusted" and report.failures == []
    assert report.trusted
    assert report.generation.episode_id == "ep-locket-1"
    assert [m.model for m in report.generation.models] == ["sdxl-turbo", ""]
    assert report.generation.prompt_sha256 == PROMPTS and report.generation.seeds == [7, 11]
    assert report.digital_source_type == SYNTHETIC_SOURCE_TYPE
    assert [a["action"] for a in report.actions][-1] == "c2pa.repackaged"
    assert report.manifest["signature_info"]["common_name"] == "microdrama test signer"
    # Still the same playable media, metadata included.
    assert probe_video(signed).frames == probe_video(master).frames == 2 * FRAMES
    with av.open(str(signed)) as container:
        assert container.metadata["comment"] == SYNTHETIC_ORIGIN_METADATA["comment"]


def test_without_the_trust_anchor_a_signature_is_valid_but_untrusted(media, manifest, c2pa_identity, tmp_path):
    master = _working_copy(media, tmp_path, "master.mp4")
    sign_file(master, master, manifest, c2pa_identity.identity)  # in place
    report = read_provenance(master)
    assert report.validation_state == "Valid" and report.failure_codes == ["signingCredential.untrusted"]
    other_root = make_test_signing(tmp_path / "other-pki").root_pem
    assert not read_provenance(master, other_root).trusted


def test_tampering_with_signed_media_fails_validation(media, manifest, c2pa_identity, tmp_path):
    master, poster = _working_copy(media, tmp_path, "master.mp4"), _working_copy(media, tmp_path, "poster.jpg")
    sign_file(master, master, manifest, c2pa_identity.identity)
    sign_file(poster, poster, manifest, c2pa_identity.identity)
    assert read_provenance(poster, c2pa_identity.root_pem).trusted
    for path, marker in ((master, b"mdat"), (poster, b"\xff\xda")):
        data = bytearray(path.read_bytes())
        data[data.index(marker) + 200] ^= 0x01  # one bit of the compressed picture
        path.write_bytes(bytes(data))
        report = read_provenance(path, c2pa_identity.root_pem)
        assert report.validation_state == "Invalid" and not report.trusted
        assert any(code.endswith("Hash.mismatch") for code in report.failure_codes), report.failure_codes


def test_hls_package_gets_sidecars_that_check_every_rendition_file(media, manifest, c2pa_identity, tmp_path):
    package = tmp_path / "hls"
    shutil.copytree(media / "hls", package)
    inits = sorted(package.rglob(INIT_SEGMENT))
    before = {init: sha256_of(init) for init in inits}
    sidecars = sign_hls_package(package, manifest, c2pa_identity.identity)
    assert sidecars == [sidecar_path(init) for init in inits] and len(sidecars) == 2
    assert {init: sha256_of(init) for init in inits} == before  # players get the init segments unchanged
    for init in inits:
        report = read_provenance(init, c2pa_identity.root_pem)
        assert not report.embedded and report.trusted, (report.failure_codes, report.rendition_file_problems)
        assert report.generation.prompt_sha256 == PROMPTS
    video = package / "video" / "h264" / "160p"
    segment = min(video.glob("*.m4s"))
    segment.write_bytes(segment.read_bytes()[:-10])
    (video / "extra.m4s").write_bytes(b"\0" * 16)
    report = read_provenance(video / INIT_SEGMENT, c2pa_identity.root_pem)
    assert report.validation_state == "Trusted"  # the init segment itself is intact ...
    assert report.rendition_file_problems == [f"{segment.name} changed since it was signed",
                                              "extra.m4s was added after signing"]
    assert not report.trusted  # ... but the rendition is not


def test_failed_signing_leaves_the_destination_as_it_was(manifest, c2pa_identity, tmp_path):
    not_mp4, destination = tmp_path / "broken.mp4", tmp_path / "out.mp4"
    not_mp4.write_bytes(b"not an mp4 at all" * 100)
    destination.write_bytes(b"previous version")
    with pytest.raises(ProvenanceError, match="C2PA signing of .*broken.mp4 failed"):
        sign_file(not_mp4, destination, manifest, c2pa_identity.identity)
    assert destination.read_bytes() == b"previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4", "out.mp4"]  # no temporary left behind
    with pytest.raises(ProvenanceError, match="cannot carry C2PA credentials"):
        sign_file(tmp_path / "master.m3u8", destination, manifest, c2pa_identity.identity)


def test_unsigned_file_has_no_manifest(media):
    with pytest.raises(ManifestNotFoundError, match="no C2PA manifest"):
        read_provenance(media / "poster.jpg")


def test_delivery_disclosure_names_the_credentials():
    block = delivery_disclosure(["poster.jpg", "master.mp4"], visible_label=True, watermarked=["poster.jpg"])
    assert block["ai_generated"] is True and block["digital_source_type"] == SYNTHETIC_SOURCE_TYPE
    assert block["content_credentials"] == ["master.mp4", "poster.jpg"]


def test_signing_identity_from_env(c2pa_identity, tmp_path):
    identity = c2pa_identity.identity
    env = {ENV_CERT: str(identity.cert_chain), ENV_KEY: str(identity.private_key), ENV_TSA: ""}
    assert SigningIdentity.from_env({}) is None  # signing not configured
    assert SigningIdentity.from_env(env) == identity
    with pytest.raises(SigningIdentityError, match=f"{ENV_KEY} is set but {ENV_CERT} is not"):
        SigningIdentity.from_env({ENV_KEY: str(identity.private_key)})
    with pytest.raises(SigningIdentityError, match="cannot read the C2PA certificate chain"):
        SigningIdentity.from_env({**env, ENV_CERT: str(tmp_path / "missing.pem")})
    with pytest.raises(SigningIdentityError, match="cannot sign ps256"):
        SigningIdentity.from_env({**env, ENV_ALG: "PS256"})
    with pytest.raises(SigningIdentityError, match="unknown C2PA signing algorithm"):
        SigningIdentity.from_env({**env, ENV_ALG: "hs256"})
    with pytest.raises(SigningIdentityError, match="not an http"):
        SigningIdentity.from_env({**env, ENV_TSA: "file:///etc/passwd"})
    other = make_test_signing(tmp_path / "other")
    with pytest.raises(SigningIdentityError, match="does not belong to the first certificate"):
        SigningIdentity.from_env({**env, ENV_KEY: str(other.identity.private_key)})
    with pytest.raises(SigningIdentityError, match="is not a PEM private key"):
        SigningIdentity.from_env({**env, ENV_KEY: str(identity.cert_chain)})
    encrypted = tmp_path / "encrypted-key.pem"
    key = serialization.load_pem_private_key(identity.private_key.read_bytes(), password=None)
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"passphrase")))
    with pytest.raises(SigningIdentityError, match="is encrypted"):
        SigningIdentity.from_env({**env, ENV_KEY: str(encrypted)})
    expired = make_test_signing(tmp_path / "expired", valid_days=0)
    with pytest.raises(SigningIdentityError, match="not now"):
        expired.identity.load()

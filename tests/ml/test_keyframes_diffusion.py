"""The diffusers keyframes backend on tiny SDXL / SD 1.5 pipelines, ControlNets and an IP-Adapter with random weights,
saved with diffusers' own save_pretrained (and the IP-Adapter checkpoint layout) and loaded back the way real
checkpoints are."""

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from dagster import materialize
from conftest import build_manifest
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from tokenizers import pre_tokenizers
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from microdrama_assets.artifacts import read_gray, read_rgb
from microdrama_assets.assets import keyframes, keyframes_keep_their_characters
from microdrama_assets.audit import weights_sha256
from microdrama_assets.backends import ModelSettings
from microdrama_assets.media.storyboard import plan_keyframes
from microdrama_assets.ml import keyframes_diffusion as kd
from microdrama_assets.ml.runtime import MissingModel
from microdrama_assets.resources import BackendSettings

TEXT_DIM = 32


def _tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer with no merges: every byte is a token, enough to drive the text encoders."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77)


def _text_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=TEXT_DIM, intermediate_size=37, num_attention_heads=4,
                          num_hidden_layers=2, projection_dim=TEXT_DIM, max_position_embeddings=77,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)


def _unet(xl: bool) -> UNet2DConditionModel:
    # SDXL's added conditioning: the pooled text embedding plus six size/crop numbers of 8 channels each.
    extra = {"addition_embed_type": "text_time", "addition_time_embed_dim": 8,
             "projection_class_embeddings_input_dim": 8 * 6 + TEXT_DIM} if xl else {}
    return UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=16, norm_num_groups=8,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=xl, cross_attention_dim=2 * TEXT_DIM if xl else TEXT_DIM, **extra)


def _save_pipeline(folder: Path, xl: bool) -> UNet2DConditionModel:
    """A tiny pipeline with an 8x VAE (like the real ones) and its matching ControlNet, saved under ``folder``."""
    tokenizer = _tokenizer()
    unet = _unet(xl)
    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, sample_size=64)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    text = _text_config(tokenizer)
    if xl:
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=CLIPTextModel(text),
                                         text_encoder_2=CLIPTextModelWithProjection(text), tokenizer=tokenizer,
                                         tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    else:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=CLIPTextModel(text), tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.save_pretrained(folder / "pipeline")
    ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 8)).save_pretrained(folder / "controlnet")
    return unet


def _save_ip_adapter(folder: Path, unet: UNet2DConditionModel) -> Path:
    """An IP-Adapter checkpoint in the published layout: image_proj.* and ip_adapter.<n>.to_k_ip/to_v_ip, where n
    counts every attention layer (self and cross, so cross-attention layers are the odd ones), plus the CLIP image
    encoder in image_encoder/ beside it."""
    image_dim, cross = 16, unet.config.cross_attention_dim
    CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37, projection_dim=image_dim,
                                                   num_hidden_layers=2, num_attention_heads=4, image_size=32,
                                                   patch_size=8)).save_pretrained(folder / kd.IMAGE_ENCODER)
    generator = torch.Generator().manual_seed(0)
    weights = {"image_proj.proj.weight": torch.randn(4 * cross, image_dim, generator=generator),
               "image_proj.proj.bias": torch.zeros(4 * cross),
               "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    cross_attention = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for index, name in enumerate(cross_attention):
        hidden = unet.get_submodule(name.removesuffix(".processor")).to_q.out_features
        for projection in ("to_k_ip", "to_v_ip"):
            weights[f"ip_adapter.{2 * index + 1}.{projection}.weight"] = torch.randn(hidden, cross, generator=generator)
    path = folder / "ip-adapter_tiny.safetensors"
    save_file(weights, path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diffusion-models")
    torch.manual_seed(0)
    xl_unet = _save_pipeline(root / "sdxl", xl=True)
    _save_pipeline(root / "sd15", xl=False)
    adapter = _save_ip_adapter(root / "ip-adapter", xl_unet)
    return {"sdxl": root / "sdxl" / "pipeline", "sdxl_controlnet": root / "sdxl" / "controlnet",
            "sd15": root / "sd15" / "pipeline", "sd15_controlnet": root / "sd15" / "controlnet", "adapter": adapter}


# Tiny generation size and two steps: the production defaults (768x1344 / 512x896, 30 steps) take minutes.
DRAFT = {"keyframes_size": "64x128", "keyframes_steps": 2}


@pytest.fixture(scope="module")
def shot_and_plans():
    manifest = build_manifest("kd-ep", shot_seconds=(1.5,))
    shot = manifest.shots[0]
    return manifest, shot, plan_keyframes(shot, manifest)


def _references(shot, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {cid: rng.integers(0, 256, (96, 80, 3), dtype=np.uint8) for cid in shot.characters}


def _far_from(masks, pixels: int) -> np.ndarray:
    union = np.zeros_like(next(iter(masks)))
    for mask in masks:
        union = np.maximum(union, mask)
    return kd.grow_mask(union, pixels) == 0


# --- through the asset -------------------------------------------------------------------------------------------


def test_keyframes_asset_renders_with_sdxl_controlnet(ml_episode, models):
    backends = BackendSettings(**DRAFT, keyframes="diffusers", keyframes_model=str(models["sdxl"]),
                               keyframes_controlnet=str(models["sdxl_controlnet"]))
    result = materialize([keyframes, keyframes_keep_their_characters], partition_key=ml_episode.partition_key,
                         instance=ml_episode.instance, resources=ml_episode.resources(backends))
    assert result.success
    # The identity descriptor is calibrated on the embedded renderer: on generated figures it only advises.
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["renderer"].value == "diffusers" and "advisory" in check.metadata
    shot = ml_episode.shot
    layout = shot.keyframe_layout()["keyframes"]
    assert len(layout) >= 1
    grow = round(kd.MASK_GROW * 1080)
    for entry in layout:
        image = read_rgb(shot.keyframe_path(entry["index"]))
        plate = read_rgb(shot.keyframe_background_path(entry["index"]))
        assert image.shape == plate.shape == (1920, 1080, 3)
        masks = [read_gray(shot.keyframe_mask_path(entry["index"], cid)) for cid in entry["characters"]]
        assert sorted(entry["characters"]) == ["maya", "victor"] and all(m.shape == (1920, 1080) for m in masks)
        assert all(m.any() for m in masks) and entry["mouths"]
        # Away from the characters the keyframe is its set plate, which the motion stage's parallax relies on,
        # but for the invisible watermark the keyframe carries (a few levels at most, ~44 dB PSNR).
        far = _far_from(masks, grow + 2)
        difference = np.abs(image[far].astype(int) - plate[far].astype(int))
        assert difference.max() <= 12 and difference.mean() < 1.5
        assert not np.array_equal(image, plate)
    metadata = result.asset_materializations_for_node("keyframes")[0].metadata
    assert metadata["renderer"].value == "diffusers"
    calls = metadata["model_calls"].value
    assert [c["params"]["kind"] for c in calls] == ["set plate"] + ["characters"] * len(layout)
    digest = weights_sha256(models["sdxl"])
    for call in calls:
        assert call["backend"] == "diffusers" and call["stage"] == "keyframes"
        assert call["model"] == str(models["sdxl"]) and call["weights_sha256"] == digest
        assert call["params"]["steps"] == 2 and call["params"]["pipeline"] == "sdxl"
        assert call["params"]["controlnet_sha256"] == weights_sha256(models["sdxl_controlnet"])
        assert call["params"]["adapter"].startswith("none")
        assert isinstance(call["seed"], int) and call["prompt"]
    assert calls[0]["seed"] == ml_episode.episode.manifest().shot("s01").seed
    assert "a barista" in calls[1]["prompt"] and "a man in a grey coat" in calls[1]["prompt"]
    assert len({c["seed"] for c in calls[1:]}) == len(layout)  # a seed per keyframe
    audit = json.loads(Path(metadata["model_calls_path"].value).read_text())
    assert audit == calls


# --- the backend on its own ------------------------------------------------------------------------------------


def test_sd15_renders_the_same_keyframe_for_the_same_seed(models, shot_and_plans):
    manifest, shot, plans = shot_and_plans
    settings = ModelSettings(**DRAFT, keyframes_model=str(models["sd15"]), keyframes_controlnet=str(models["sd15_controlnet"]))
    first = kd.DiffusionKeyframes(settings).render(manifest, shot, plans[0], _references(shot))
    backend = kd.DiffusionKeyframes(settings)
    again = backend.render(manifest, shot, plans[0], _references(shot))
    assert first.image.shape == (1920, 1080, 3) and first.image.dtype == np.uint8
    assert np.array_equal(first.image, again.image) and np.array_equal(first.background, again.background)
    calls = backend.take_calls()
    assert [c.params["pipeline"] for c in calls] == ["sd15", "sd15"] and backend.take_calls() == []
    reseeded = shot.model_copy(update={"seed": shot.seed + 1})
    other = kd.DiffusionKeyframes(settings).render(manifest, reseeded, plans[0], _references(shot))
    assert not np.array_equal(first.background, other.background)


def test_ip_adapter_conditions_each_character_on_its_reference(models, shot_and_plans):
    manifest, shot, plans = shot_and_plans
    plain = ModelSettings(**DRAFT, keyframes_model=str(models["sdxl"]), keyframes_controlnet=str(models["sdxl_controlnet"]))
    adapted = replace(plain, keyframes_adapter=str(models["adapter"]))
    backend = kd.DiffusionKeyframes(adapted)
    frame = backend.render(manifest, shot, plans[0], _references(shot, seed=1))
    other = kd.DiffusionKeyframes(adapted).render(manifest, shot, plans[0], _references(shot, seed=2))
    # The set plate takes no reference (it has nobody in it); the characters change with their references.
    without = kd.DiffusionKeyframes(plain).render(manifest, shot, plans[0], _references(shot, seed=1))
    assert np.array_equal(frame.background, without.background)
    assert np.array_equal(frame.background, other.background)
    inside = frame.character_mask > 0
    assert not np.array_equal(frame.image[inside], other.image[inside])
    far = _far_from(list(frame.masks.values()), round(kd.MASK_GROW * 1080) + 2)
    assert np.array_equal(frame.image[far], other.image[far])
    _, figures_call = backend.take_calls()
    assert figures_call.params["adapter"] == str(models["adapter"])
    assert figures_call.params["adapter_sha256"] == weights_sha256(models["adapter"])
    assert figures_call.params["adapter_references"] == ["maya", "victor"]
    # Figures seen from behind take no front-view reference.
    from_behind = replace(plans[0], figures=tuple(replace(pose, back_to_camera=True) for pose in plans[0].figures))
    backend.render(manifest, shot, from_behind, _references(shot, seed=1))
    assert backend.take_calls()[-1].params["adapter_references"] == []
    with pytest.raises(KeyError, match="no reference image for victor"):
        kd.DiffusionKeyframes(adapted).render(manifest, shot, plans[0], {"maya": _references(shot)["maya"]})


def test_missing_controlnet_names_the_setting(models, shot_and_plans, tmp_path):
    manifest, shot, plans = shot_and_plans
    backend = kd.DiffusionKeyframes(ModelSettings(**DRAFT, keyframes_model=str(models["sdxl"]),
                                                  keyframes_controlnet=str(tmp_path / "no-controlnet")))
    with pytest.raises(MissingModel, match=r"keyframes_controlnet.*OpenPose ControlNet"):
        backend.render(manifest, shot, plans[0], _references(shot))
    unset = kd.DiffusionKeyframes(ModelSettings(**DRAFT, keyframes_model=str(models["sdxl"])))
    with pytest.raises(MissingModel, match="MICRODRAMA_KEYFRAMES_CONTROLNET"):
        unset.render(manifest, shot, plans[0], _references(shot))


def test_missing_controlnet_fails_the_asset(ml_episode, models, tmp_path):
    result = ml_episode.materialize([keyframes], BackendSettings(**DRAFT,
        keyframes="diffusers", keyframes_model=str(models["sdxl"]), keyframes_controlnet=str(tmp_path / "none")),
        raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "keyframes_controlnet" in str(failure.step_failure_data.error)


# --- plain functions ------------------------------------------------------------------------------------------


def test_pipeline_family_comes_from_model_index(models, tmp_path):
    assert kd.pipeline_family(models["sdxl"]) is kd.SDXL
    assert kd.pipeline_family(models["sd15"]) is kd.SD15
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLImg2ImgPipeline",
                                                           "unet": [], "text_encoder_2": []}))
    with pytest.raises(ValueError, match="SDXL or SD 1.5-class"):
        kd.pipeline_family(tmp_path)


def test_canvas_holds_the_frame_aspect_and_round_trips():
    canvas = kd.fit_canvas(1080, 1920, 768, 1344)
    assert canvas.box == (6, 0, 756, 1344)  # 756:1344 is exactly 9:16
    assert kd.fit_canvas(1080, 1920, 512, 896).box == (4, 0, 504, 896)
    with pytest.raises(ValueError, match="multiples of 8"):
        kd.fit_canvas(1080, 1920, 500, 896)
    frame = np.zeros((1920, 1080, 3), np.uint8)
    frame[:, :540] = 200
    small = kd.to_canvas(frame, canvas)
    assert small.shape == (1344, 768, 3) and not small[:, :6].any() and not small[:, -6:].any()
    back = kd.from_canvas(small, canvas, 1080, 1920)
    assert back.shape == (1920, 1080, 3)
    assert abs(int(back[960, 200, 0]) - 200) <= 2 and back[960, 900].max() <= 2


def test_composite_keeps_the_plate_outside_the_region():
    plate = np.full((100, 80, 3), 50, np.uint8)
    figures = np.full((100, 80, 3), 250, np.uint8)
    region = np.zeros((100, 80), np.uint8)
    cv2.circle(region, (40, 50), 20, 255, -1)
    out = kd.composite(plate, figures, region, feather=4)
    assert np.array_equal(out[region == 0], plate[region == 0])
    assert (out[50, 40] == 250).all()
    edge = out[50, 40 + 19, 0]
    assert 50 < edge < 250  # feathered inside the region's rim


def test_prompts_describe_the_shot_and_characters(shot_and_plans):
    manifest, shot, plans = shot_and_plans
    assert kd.colour_name("#2b1a10") == "dark brown" and kd.colour_name("#2f6f8f") == "teal"
    assert kd.skin_tone("#f5deca") == "fair" and kd.skin_tone("#3b2219") == "dark"
    prompt = kd.figures_prompt(manifest, shot, plans[0])
    left, right = sorted(plans[0].figures, key=lambda pose: pose.x)
    looks = {"maya": "a barista", "victor": "a man in a grey coat"}
    assert prompt.index(looks[left.character_id]) < prompt.index(looks[right.character_id])
    assert "medium shot" in prompt and "two people" in prompt and shot.action in prompt and "cafe" in prompt
    assert "medium skin, dark brown long hair, teal outfit, slim build" in prompt
    plate = kd.plate_prompt(shot)
    assert "nobody" in plate and "at night" in plate and "barista" not in plate


def test_the_generation_size_setting_is_checked():
    with pytest.raises(ValueError, match=r"keyframes_size \(MICRODRAMA_KEYFRAMES_SIZE\) must look like"):
        kd.generation_size(kd.SDXL, "big")
    with pytest.raises(ValueError, match="must be positive"):
        kd.generation_size(kd.SDXL, "0x128")
    assert kd.generation_size(kd.SDXL, "") == (768, 1344) and kd.generation_size(kd.SD15, "64x128") == (64, 128)
    assert BackendSettings(keyframes_steps=0).model_settings().keyframes_steps == 0

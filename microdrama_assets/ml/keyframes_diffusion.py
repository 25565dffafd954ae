"""Keyframes from a local diffusers Stable Diffusion pipeline (SDXL or SD 1.5-class) with an OpenPose ControlNet.

The layout comes first: the procedural renderer places every figure where the storyboard's pose map puts it and
gives its masks and mouth anchors. Then two model calls. The set plate: the location with nobody in it, generated
once per shot so the set stays put between keyframes. The characters: inpainted over the plate inside their
(slightly grown) masks, the ControlNet following the pose map and, when an IP-Adapter is configured, each
character's bundle reference steering their own region. Outside the characters the keyframe is the plate itself,
which is what the motion stage's parallax expects of a keyframe and its set plate.

Both calls run at a model-native size holding a centred 9:16 box, which is cropped out and upscaled to the
manifest's frame size (1080x1920).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from diffusers import (
    ControlNetModel,
    DiffusionPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.image_processor import IPAdapterMaskProcessor
from PIL import Image

from ..audit import ModelCall, weights_sha256
from ..backends import ModelSettings
from ..media import render
from ..media.manifest import Character, EpisodeManifest, Framing, Shot
from ..media.storyboard import KeyframePlan, render_pose_map, stable_seed
from .runtime import load_once, pick_device, pick_dtype, require_model, seeded_generator

STAGE = "keyframes"
IMAGE_ENCODER = "image_encoder"  # the IP-Adapter's CLIP image encoder, a folder beside its weights file
SIZE_SETTING = "keyframes_size (MICRODRAMA_KEYFRAMES_SIZE)"
CONTROL_SCALE = 0.9  # how strictly the figures follow the pose map
ADAPTER_SCALE = 0.6  # how strongly each reference steers its character (higher copies the portrait's framing)
MASK_GROW = 0.015  # of the frame width: room around each procedural silhouette for the painted figure
NEGATIVE = "blurry, lowres, deformed, extra limbs, extra fingers, text, watermark, logo, frame, border"
NOBODY = "people, person, man, woman, figure, crowd, face, body"


@dataclass(frozen=True)
class Family:
    """What differs between the SDXL and SD 1.5-class pipelines."""

    name: str
    text_to_image: type[DiffusionPipeline]
    inpaint: type[DiffusionPipeline]
    size: tuple[int, int]  # native generation size (width, height): about the pixel count the model was trained at
    steps: int
    guidance: float


SDXL = Family("sdxl", StableDiffusionXLPipeline, StableDiffusionXLControlNetInpaintPipeline, (768, 1344), 30, 6.0)
SD15 = Family("sd15", StableDiffusionPipeline, StableDiffusionControlNetInpaintPipeline, (512, 896), 30, 7.0)


def pipeline_family(model_dir: Path) -> Family:
    """SDXL or SD 1.5-class, from the components the pipeline directory's ``model_index.json`` lists."""
    index = json.loads((model_dir / "model_index.json").read_text(encoding="utf-8"))
    if "unet" in index and "text_encoder" in index:
        return SDXL if "text_encoder_2" in index else SD15
    raise ValueError(f"{model_dir} holds a {index.get('_class_name', 'pipeline')} without a UNet and text encoder; "
                     "keyframes_model must be an SDXL or SD 1.5-class text-to-image pipeline")


# --- canvas: the 9:16 frame inside the generation size -----------------------------------------------------


@dataclass(frozen=True)
class Canvas:
    width: int  # generation size
    height: int
    box: tuple[int, int, int, int]  # x, y, width, height of the frame's aspect ratio, centred in the canvas


def fit_canvas(frame_width: int, frame_height: int, width: int, height: int) -> Canvas:
    if width % 8 or height % 8 or width <= 0 or height <= 0:
        raise ValueError(f"generation size {width}x{height} must be positive multiples of 8 (the VAE's stride)")
    aspect = frame_width / frame_height
    box_w, box_h = (width, round(width / aspect)) if width / height < aspect else (round(height * aspect), height)
    return Canvas(width, height, ((width - box_w) // 2, (height - box_h) // 2, box_w, box_h))


def to_canvas(image: np.ndarray, canvas: Canvas, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """A full-frame image (pose map, mask) shrunk into the canvas box, zero around it."""
    x, y, w, h = canvas.box
    out = np.zeros((canvas.height, canvas.width, *image.shape[2:]), image.dtype)
    out[y:y + h, x:x + w] = cv2.resize(image, (w, h), interpolation=interpolation)
    return out


def from_canvas(image: np.ndarray, canvas: Canvas, frame_width: int, frame_height: int) -> np.ndarray:
    """The canvas box cropped out and upscaled to the frame size."""
    x, y, w, h = canvas.box
    return cv2.resize(image[y:y + h, x:x + w], (frame_width, frame_height), interpolation=cv2.INTER_LANCZOS4)


def grow_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    if pixels <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask, kernel)


def composite(plate: np.ndarray, figures: np.ndarray, region: np.ndarray, feather: int) -> np.ndarray:
    """``figures`` inside ``region`` (uint8 0/255), ``plate`` outside, with a soft edge ``feather`` pixels wide
    that stays inside the region, so the plate is untouched wherever the figures were not painted."""
    inner = cv2.erode(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * feather + 1, 2 * feather + 1)))
    alpha = cv2.GaussianBlur(inner.astype(np.float32) / 255.0, (0, 0), max(feather / 2.0, 0.5))
    alpha = np.minimum(alpha, region.astype(np.float32) / 255.0)[..., None]
    return np.clip(figures * alpha + plate * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)


# --- prompts --------------------------------------------------------------------------------------------------

_COLOURS = {
    "black": (20, 20, 20), "charcoal": (60, 62, 66), "grey": (128, 128, 128), "silver": (192, 192, 192),
    "white": (240, 240, 240), "red": (200, 30, 30), "burgundy": (110, 20, 40), "pink": (240, 150, 180),
    "orange": (240, 130, 30), "brown": (110, 70, 40), "dark brown": (45, 28, 16), "beige": (215, 195, 160),
    "golden": (220, 175, 60), "blonde": (235, 210, 140), "yellow": (240, 220, 40), "olive": (110, 120, 50),
    "green": (40, 140, 60), "teal": (30, 120, 120), "navy": (25, 35, 90), "blue": (40, 90, 200),
    "light blue": (140, 190, 235), "purple": (110, 50, 150), "auburn": (140, 50, 25),
}  # fmt: skip
_SKIN = ((200, "fair"), (170, "light"), (135, "medium"), (100, "tan"), (70, "brown"), (0, "dark"))
_FRAMING = {
    Framing.wide: "wide shot, full body", Framing.two_shot: "two shot, knees up", Framing.medium: "medium shot, waist up",
    Framing.over_shoulder: "over the shoulder shot", Framing.close_up: "close-up, head and shoulders",
}  # fmt: skip
_SETS = {
    "cafe": "a cosy cafe interior", "street": "a city street", "hospital": "a hospital corridor",
    "elevator": "an elevator interior", "office": "a modern office", "apartment": "an apartment living room",
    "hotel": "a hotel lobby", "rooftop": "a city rooftop", "park": "a city park", "station": "a train station platform",
}  # fmt: skip
_TIMES = {"day": "daylight", "dusk": "at dusk, golden hour", "night": "at night"}


def colour_name(hex_colour: str) -> str:
    """The nearest plain colour word (text encoders know words, not hex codes)."""
    rgb = np.array(render.hex_rgb(hex_colour))
    return min(_COLOURS, key=lambda name: float(np.sum((rgb - np.array(_COLOURS[name])) ** 2)))


def skin_tone(hex_colour: str) -> str:
    r, g, b = render.hex_rgb(hex_colour)
    lightness = 0.299 * r + 0.587 * g + 0.114 * b
    return next(word for threshold, word in _SKIN if lightness >= threshold)


def character_phrase(character: Character) -> str:
    """What the character looks like (names mean nothing to the model and spend the prompt's 77 tokens)."""
    look = character.appearance
    hair = "bald" if look.hair_style.value == "bald" else f"{colour_name(look.hair)} {look.hair_style.value} hair"
    return (f"{character.description}, {skin_tone(look.skin)} skin, {hair}, {colour_name(look.outfit)} outfit, "
            f"{look.build.value} build")


def set_phrase(shot: Shot) -> str:
    return f"{_SETS[shot.location.value]} {_TIMES[shot.time_of_day.value]}, {shot.mood.value} mood"


def plate_prompt(shot: Shot) -> str:
    return f"film still, {set_phrase(shot)}, empty scene, nobody, detailed background"


def figures_prompt(manifest: EpisodeManifest, shot: Shot, plan: KeyframePlan) -> str:
    """Framing first, then who is where (left to right), the action and the set: CLIP reads 77 tokens, so what
    matters most comes first."""
    figures = sorted(plan.figures, key=lambda pose: pose.x)
    people = "; ".join(character_phrase(manifest.character(pose.character_id)) for pose in figures)
    count = {1: "one person", 2: "two people", 3: "three people"}.get(len(figures), f"{len(figures)} people")
    return f"film still, {_FRAMING[shot.framing]}, {count}: {people}. {shot.action} In {set_phrase(shot)}"


# --- models ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pipelines:
    family: Family
    plate: DiffusionPipeline  # text to image: the set alone
    figures: DiffusionPipeline  # ControlNet inpainting over the plate, sharing the plate pipeline's modules
    adapter: bool  # an IP-Adapter is loaded into the shared UNet


def load_pipelines(family: Family, model_dir: Path, controlnet_dir: Path, adapter_file: Path | None,
                   device: torch.device, dtype: torch.dtype) -> Pipelines:
    controlnet = ControlNetModel.from_pretrained(controlnet_dir, dtype=dtype)
    plate = family.text_to_image.from_pretrained(model_dir, dtype=dtype)
    figures = family.inpaint.from_pipe(plate, controlnet=controlnet)  # same UNet, VAE and text encoders
    if adapter_file is not None:
        figures.load_ip_adapter(str(adapter_file.parent), subfolder="", weight_name=adapter_file.name,
                                image_encoder_folder=IMAGE_ENCODER)
    for pipe in (plate, figures):
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
    return Pipelines(family, plate, figures, adapter_file is not None)


def generation_size(family: Family, value: str) -> tuple[int, int]:
    """``value`` ("WxH") as a size, or the family's native one when it is empty."""
    if not value:
        return family.size
    try:
        width, height = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise ValueError(f"{SIZE_SETTING} must look like 768x1344, got {value!r}") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"{SIZE_SETTING} must be positive, got {value!r}")
    return width, height


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(images[0] * 255.0 + 0.5, 0, 255).astype(np.uint8)


# --- the backend -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Models:
    """The loaded pipelines and what the audit records about the weights behind them."""

    pipes: Pipelines
    model: Path
    device: torch.device
    params: dict  # model paths and hashes besides the pipeline's own, shared by every call's audit params


class DiffusionKeyframes:
    name = "diffusers"

    def __init__(self, settings: ModelSettings):
        self.settings = settings
        self._calls: list[ModelCall] = []
        self._plate: tuple[tuple, np.ndarray, np.ndarray] | None = None  # (key, canvas-size plate, frame-size plate)

    def take_calls(self) -> list[ModelCall]:
        calls, self._calls = self._calls, []
        return calls

    def _paths(self) -> tuple[Path, Path, Path | None]:
        model = require_model(self.settings.keyframes_model, STAGE, "MICRODRAMA_KEYFRAMES_MODEL (keyframes_model)",
                              "a diffusers SDXL or SD 1.5 pipeline directory (save_pretrained layout)",
                              needs=("model_index.json", "unet", "vae"))
        controlnet = require_model(self.settings.keyframes_controlnet, STAGE,
                                   "MICRODRAMA_KEYFRAMES_CONTROLNET (keyframes_controlnet)",
                                   "a diffusers OpenPose ControlNet directory matching the pipeline (config.json "
                                   "and weights)", needs=("config.json",))
        if not self.settings.keyframes_adapter:
            return model, controlnet, None
        setting = "MICRODRAMA_KEYFRAMES_ADAPTER (keyframes_adapter)"
        adapter = require_model(self.settings.keyframes_adapter, STAGE, setting,
                                f"an IP-Adapter weights file with its CLIP image encoder in {IMAGE_ENCODER}/ beside it")
        if not adapter.is_file():
            raise ValueError(f"{setting} must be an IP-Adapter weights file (.safetensors or .bin), "
                             f"got the directory {adapter}")
        require_model(adapter.parent, STAGE, setting, f"the IP-Adapter's CLIP image encoder in {IMAGE_ENCODER}/ "
                      "beside its weights file", needs=(f"{IMAGE_ENCODER}/config.json",))
        return model, controlnet, adapter

    def _load(self) -> _Models:
        model, controlnet, adapter = self._paths()
        family = pipeline_family(model)
        device = pick_device(self.settings.device)
        params = {"pipeline": family.name, "controlnet": str(controlnet), "controlnet_sha256": weights_sha256(controlnet),
                  "adapter": "none (set keyframes_adapter to an IP-Adapter weights file to keep characters "
                             "consistent with their reference views)"}
        if adapter is not None:
            params.update(adapter=str(adapter), adapter_sha256=weights_sha256(adapter),
                          adapter_image_encoder_sha256=weights_sha256(adapter.parent / IMAGE_ENCODER))
        # The ControlNet and the adapter are part of what is loaded: a change in either loads it all again.
        kind = f"diffusers-keyframes:{controlnet}:{params['controlnet_sha256']}:{adapter}:{params.get('adapter_sha256')}"
        pipes = load_once(kind, model, device, lambda: load_pipelines(family, model, controlnet, adapter, device,
                                                                       pick_dtype(device)))
        return _Models(pipes, model, device, params)

    def _record(self, models: _Models, seed: int, prompt: str, params: dict) -> None:
        self._calls.append(ModelCall(STAGE, self.name, str(models.model), weights_sha256(models.model),
                                     str(models.device), seed, prompt, {**models.params, **params}))

    def render(self, manifest: EpisodeManifest, shot: Shot, plan: KeyframePlan,
               references: Mapping[str, np.ndarray]) -> render.RenderedKeyframe:
        models = self._load()
        family = models.pipes.family
        canvas = fit_canvas(manifest.width, manifest.height, *generation_size(family, self.settings.keyframes_size))
        sizes = {"generation_size": f"{canvas.width}x{canvas.height}", "frame_box": list(canvas.box),
                 "frame_size": f"{manifest.width}x{manifest.height}",
                 "steps": self.settings.keyframes_steps or family.steps,
                 "guidance": family.guidance}
        layout = render.render_keyframe(manifest, shot, plan)  # where the pose map puts everyone: masks, mouths
        plate_canvas, plate = self._set_plate(models, shot, canvas, sizes, (manifest.width, manifest.height))
        if not layout.character_mask.any():
            return render.RenderedKeyframe(plate, plate, layout.character_mask, layout.masks, layout.mouths)
        grow = max(1, round(MASK_GROW * manifest.width))
        region = grow_mask(layout.character_mask, grow)
        seed = stable_seed(shot.seed, "keyframe", plan.index) % 2**63  # a signed 64-bit int, as metadata keeps it
        prompt = figures_prompt(manifest, shot, plan)
        pose_map = render_pose_map(plan, manifest.width, manifest.height)
        call = {
            "prompt": prompt, "negative_prompt": NEGATIVE, "image": Image.fromarray(plate_canvas),
            "mask_image": Image.fromarray(to_canvas(region, canvas, cv2.INTER_NEAREST)),
            "control_image": Image.fromarray(to_canvas(pose_map, canvas)), "width": canvas.width,
            "height": canvas.height, "strength": 1.0, "num_inference_steps": sizes["steps"],
            "guidance_scale": family.guidance, "controlnet_conditioning_scale": CONTROL_SCALE,
            "generator": seeded_generator(models.device, seed), "output_type": "np",
        }
        params = {**sizes, "kind": "characters", "keyframe": plan.index, "negative_prompt": NEGATIVE,
                  "controlnet_conditioning_scale": CONTROL_SCALE, "strength": 1.0, "mask_grow_px": grow}
        if models.pipes.adapter:
            # A figure seen from behind (over the shoulder) would be pushed towards its front view's face.
            facing = {pose.character_id for pose in plan.figures if not pose.back_to_camera}
            masks = {cid: mask for cid, mask in layout.masks.items() if cid in facing}
            inputs, referenced = _reference_inputs(models.pipes, masks, references, canvas, grow)
            call.update(inputs)
            params.update(adapter_scale=ADAPTER_SCALE, adapter_references=sorted(referenced))
        generated = _to_uint8(models.pipes.figures(**call).images)
        self._record(models, seed, prompt, params)
        figures = from_canvas(generated, canvas, manifest.width, manifest.height)
        image = composite(plate, figures, region, feather=grow)
        return render.RenderedKeyframe(image, plate, layout.character_mask, layout.masks, layout.mouths)

    def _set_plate(self, models: _Models, shot: Shot, canvas: Canvas, sizes: dict,
                   frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The shot's set with nobody in it (at the canvas size and the frame size), made once for all the shot's
        keyframes so the set does not change between them."""
        prompt, negative, seed = plate_prompt(shot), f"{NOBODY}, {NEGATIVE}", shot.seed
        key = (str(models.model), prompt, seed, canvas, sizes["steps"])
        if self._plate is not None and self._plate[0] == key:
            return self._plate[1], self._plate[2]
        pipes = models.pipes
        extra = {}
        if pipes.adapter:
            # The plate shares the UNet that carries the IP-Adapter: it gets an empty reference at zero weight.
            pipes.figures.set_ip_adapter_scale(0.0)
            extra["ip_adapter_image_embeds"] = [_empty_reference(pipes)]
        images = pipes.plate(prompt=prompt, negative_prompt=negative, width=canvas.width, height=canvas.height,
                             num_inference_steps=sizes["steps"], guidance_scale=pipes.family.guidance,
                             generator=seeded_generator(models.device, seed), output_type="np", **extra).images
        self._record(models, seed, prompt, {**sizes, "kind": "set plate", "negative_prompt": negative})
        plate_canvas = _to_uint8(images)
        self._plate = (key, plate_canvas, from_canvas(plate_canvas, canvas, *frame_size))
        return self._plate[1], self._plate[2]


def _empty_reference(pipes: Pipelines) -> torch.Tensor:
    encoder = pipes.figures.image_encoder
    # (negative, positive) x one image x the encoder's embedding: the layout the pipelines take precomputed embeds in.
    return torch.zeros(2, 1, encoder.config.projection_dim, device=encoder.device, dtype=encoder.dtype)


def _reference_inputs(pipes: Pipelines, masks: Mapping[str, np.ndarray], references: Mapping[str, np.ndarray],
                      canvas: Canvas, grow: int) -> tuple[dict, list[str]]:
    """IP-Adapter inputs: every visible character's reference, each attending only inside its own region (the
    adapter's per-image attention masks), so two characters do not blend into one; and who they are."""
    visible = [cid for cid, mask in masks.items() if mask.any()]
    if not visible:
        pipes.figures.set_ip_adapter_scale(0.0)
        return {"ip_adapter_image_embeds": [_empty_reference(pipes)]}, []
    missing = [cid for cid in visible if cid not in references]
    if missing:
        raise KeyError(f"no reference image for {', '.join(missing)}: the IP-Adapter needs each on-screen "
                       "character's front view from their bundle")
    pipes.figures.set_ip_adapter_scale([[ADAPTER_SCALE] * len(visible)])
    regions = [Image.fromarray(to_canvas(grow_mask(masks[cid], grow), canvas, cv2.INTER_NEAREST)) for cid in visible]
    processed = IPAdapterMaskProcessor().preprocess(regions, height=canvas.height, width=canvas.width)
    per_image = processed.reshape(1, len(visible), *processed.shape[2:])  # one adapter, an image per character
    inputs = {"ip_adapter_image": [[Image.fromarray(references[cid]) for cid in visible]],
              "cross_attention_kwargs": {"ip_adapter_masks": [per_image]}}
    return inputs, visible

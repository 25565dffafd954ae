"""Learned frame interpolation: RIFE's IFNet (Practical-RIFE v4.x) behind the motion protocol.

Checkpoint: a Practical-RIFE ``train_log`` directory (what its release zips unpack to) holding ``flownet.pkl``, a
torch state dict of ``IFNet`` whose keys carry DistributedDataParallel's ``module.`` prefix, which is stripped
here as RIFE's own loader does. The modules and their attribute names below are Practical-RIFE's, so the keys
match. This is the family with the ``Head`` feature encoder (``encode.cnn0`` .. ``encode.cnn3``): v4.25 (five
blocks, features carried from block to block; the default) and four-block releases such as v4.8; the layer widths
and block count are read from the checkpoint's tensor shapes (``RifeConfig.from_state_dict``), so no config file
is needed, and the per-block scales are RIFE's (16, 8, 4, 2, 1 for five blocks, 8 .. 1 for four). Releases with
another encoder (a plain convolutional ``encode``) and v3.x do not load: the strict load says which keys differ.

Use: the network estimates, at a reduced working resolution and for a batch of timesteps at once, the
bidirectional flow from each in-between frame back to its two keyframes plus the fusion mask. The frame is then
made at full resolution by sampling both keyframes along those flows (``grid_sample``) and blending them by the
mask, with the shot's camera move folded into the same sampling positions, as the embedded backend does. Keyframe
timing, easing and camera moves are the embedded backend's (``media.motion``), and so is the parallax: with
keyframe layers the character layer is warped by the network's flow and carried by the full camera move, the set
plate behind it by less of it. Frames are yielded one at a time; only the current batch's low-resolution flows
are held.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audit import ModelCall, weights_sha256
from ..backends import ModelSettings
from ..media.manifest import FPS, CameraMove
from ..media.motion import (BACKGROUND_PARALLAX, KeyframeLayers, background_source, character_layer,
                            ground_line, camera_matrix, keyframe_times, segment_position)
from .runtime import load_once, pick_device, pick_dtype, require_model

CHECKPOINT = "flownet.pkl"
WORK_LONG_SIDE = 960  # the network sees the keyframes at most this large: flow is smooth, the warp is full-res
BATCH_SIZE = 8  # in-between timesteps per network call
MAP_STEP = 4  # sampling positions are computed on every 4th output pixel, then upsampled
MASK_AND_FLOW = 5  # channels of a block's output that are flow (4) and fusion mask (1); the rest are features


@dataclass(frozen=True)
class RifeConfig:
    """IFNet's shape. Defaults are Practical-RIFE v4.25's."""

    head_hidden: int = 16  # encode.cnn0..cnn2 width
    head_out: int = 16  # feature channels per image the encoder gives the blocks
    block_widths: tuple[int, ...] = (192, 128, 96, 64, 32)  # one IFBlock each, coarse to fine
    block_outputs: int = 13  # channels of each block's last layer: flow (4), mask (1), then features
    carry_features: bool = True  # whether a block's extra output channels feed the next block (v4.25 on)
    res_convs: int = 8  # ResConv layers per block

    def __post_init__(self):
        if not self.block_widths or self.block_outputs < MASK_AND_FLOW:
            raise ValueError(f"an IFNet needs at least one block and {MASK_AND_FLOW} block outputs: {self}")

    @property
    def scales(self) -> tuple[int, ...]:
        """Downscale each block works at, coarse to fine, as RIFE's inference uses."""
        return tuple(2 ** (len(self.block_widths) - 1 - index) for index in range(len(self.block_widths)))

    @property
    def carried(self) -> int:
        return self.block_outputs - MASK_AND_FLOW if self.carry_features else 0

    @staticmethod
    def from_state_dict(state: dict[str, torch.Tensor]) -> "RifeConfig":
        """The architecture a checkpoint was saved from, read off its tensor shapes."""
        blocks = sorted({int(m.group(1)) for key in state if (m := re.match(r"block(\d+)\.", key))})
        try:
            if blocks != list(range(len(blocks))) or not blocks:
                raise KeyError("block0..blockN")
            head_out = state["encode.cnn3.weight"].shape[1]  # ConvTranspose2d weights are (in, out, k, k)
            block_outputs = state["block0.lastconv.0.weight"].shape[1] // 4  # before PixelShuffle(2)
            res_convs = len({key for key in state if re.match(r"block0\.convblock\.\d+\.conv\.weight$", key)})
            # A later block's input beyond images, warped features, timestep, mask and flow is carried features.
            carried = (state["block1.conv0.0.0.weight"].shape[1] - 12 - 2 * head_out) if len(blocks) > 1 else 0
            return RifeConfig(
                head_hidden=state["encode.cnn0.weight"].shape[0], head_out=head_out,
                block_widths=tuple(state[f"block{index}.conv0.1.0.weight"].shape[0] for index in blocks),
                block_outputs=block_outputs, carry_features=carried > 0, res_convs=res_convs)
        except KeyError as exc:
            raise ValueError(f"not a Practical-RIFE v4.x IFNet state dict with a Head encoder (no {exc})") from None


def _conv(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 3, stride, 1), nn.LeakyReLU(0.2, True))


class Head(nn.Module):
    """Per-image features at full working resolution."""

    def __init__(self, hidden: int, out: int):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, hidden, 3, 2, 1)
        self.cnn1 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.cnn2 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(hidden, out, 4, 2, 1)
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.cnn0(image))
        x = self.relu(self.cnn1(x))
        x = self.relu(self.cnn2(x))
        return self.cnn3(x)


class ResConv(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, channels, 1, 1)))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    """One coarse-to-fine step: from its inputs seen at 1/scale, a flow update, the mask and features."""

    def __init__(self, in_planes: int, width: int, outputs: int, res_convs: int):
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_planes, width // 2, 2), _conv(width // 2, width, 2))
        self.convblock = nn.Sequential(*(ResConv(width) for _ in range(res_convs)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 4 * outputs, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """RIFE's backward warp: ``image`` sampled at each pixel plus its flow (pixels), border-clamped."""
    batch, _, height, width = flow.shape
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device, dtype=flow.dtype).view(1, 1, width)
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device, dtype=flow.dtype).view(1, height, 1)
    grid = torch.stack((xs + flow[:, 0] / ((width - 1.0) / 2.0), ys + flow[:, 1] / ((height - 1.0) / 2.0)), -1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    """Practical-RIFE's intermediate flow network (inference path only; the attribute names are RIFE's, so its
    state dict keys are too)."""

    def __init__(self, config: RifeConfig = RifeConfig()):
        super().__init__()
        self.config = config
        images = 6 + 2 * config.head_out  # both images (RGB) and their encoder features
        for index, width in enumerate(config.block_widths):
            # The first block sees the images and the timestep; later ones the images warped by the flow so
            # far, the timestep, the mask, the carried features and the flow itself.
            in_planes = images + 1 if index == 0 else images + 2 + config.carried + 4
            self.add_module(f"block{index}", IFBlock(in_planes, width, config.block_outputs, config.res_convs))
        self.encode = Head(config.head_hidden, config.head_out)

    @property
    def multiple(self) -> int:
        """Working sizes must divide by this: the coarsest block downsamples by its scale, then by 4."""
        return 4 * self.config.scales[0]

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flows (B, 4, h, w: to ``img0`` then to ``img1``, in pixels) and fusion mask (B, 1, h, w: the weight of
        ``img0``) of the frames at ``timestep`` (B, 1, 1, 1) between two images in [0, 1], (B, 3, h, w) each or
        (1, 3, h, w) shared by the batch (then encoded once)."""
        batch = timestep.shape[0]
        f0, f1 = (self.encode(image).expand(batch, -1, -1, -1) for image in (img0, img1))
        img0, img1 = img0.expand(batch, -1, -1, -1), img1.expand(batch, -1, -1, -1)
        time_plane = timestep.expand(-1, 1, img0.shape[2], img0.shape[3])
        flow = mask = features = None
        warped0, warped1 = img0, img1
        for index, scale in enumerate(self.config.scales):
            block = getattr(self, f"block{index}")
            if flow is None:
                flow, mask, features = block(torch.cat((img0, img1, f0, f1, time_plane), 1), None, scale)
            else:
                inputs = [warped0, warped1, warp(f0, flow[:, :2]), warp(f1, flow[:, 2:4]), time_plane, mask]
                if self.config.carry_features:
                    inputs.append(features)
                delta, mask, features = block(torch.cat(inputs, 1), flow, scale)
                flow = flow + delta
            warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        return flow, torch.sigmoid(mask)


def load_ifnet(checkpoint: Path, device: torch.device, dtype: torch.dtype) -> IFNet:
    """The IFNet saved in ``checkpoint`` (a RIFE ``flownet.pkl``), in eval mode on ``device``. The load is strict:
    weights that do not fit the architecture fail here rather than run half-initialised."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{checkpoint} is not a torch state dict of tensors ({exc})") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{checkpoint} holds a {type(state).__name__}, not an IFNet state dict")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    net = IFNet(RifeConfig.from_state_dict(state))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{checkpoint} does not fit Practical-RIFE's v4.x IFNet: {exc}") from exc
    return net.to(device=device, dtype=dtype).eval()


def working_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """(w, h) the network runs at: the frame scaled so its long side is at most WORK_LONG_SIDE, each side
    rounded to the network's multiple (the aspect changes slightly; flows are rescaled per axis)."""
    factor = min(1.0, WORK_LONG_SIDE / max(width, height))
    return tuple(max(multiple, round(side * factor / multiple) * multiple) for side in (width, height))


def _tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(1, C, H, W) float32 in [0, 1] from an (H, W, C) uint8 image."""
    pixels = torch.from_numpy(np.require(image, requirements=("C", "W")))  # a copy only if read-only
    return pixels.to(device).permute(2, 0, 1)[None].float() / 255.0


def _normalized(x: torch.Tensor, y: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """(1, 2, h, w) grid_sample coordinates (align_corners=True) of pixel positions in a width x height image."""
    return torch.stack((x * (2.0 / (width - 1)) - 1.0, y * (2.0 / (height - 1)) - 1.0))[None]


def _sample(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``image`` (1, C, H, W) bilinearly sampled at a (1, 2, h, w) normalized grid."""
    return F.grid_sample(image, grid.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                         align_corners=True)


def _full(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Maps on the low-res grid of output positions (``_Grid``) at every output pixel: exact for the camera's
    affine part, smooth for the flow."""
    return F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=True)


class _Grid:
    """The output pixels the sampling positions are computed at: about one in MAP_STEP along each axis, the
    first and last included, so upsampling (``_full``) reproduces an affine map exactly."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.x, self.y = np.meshgrid(np.linspace(0, width - 1, -(-(width - 1) // MAP_STEP) + 1, dtype=np.float32),
                                     np.linspace(0, height - 1, -(-(height - 1) // MAP_STEP) + 1, dtype=np.float32))

    def camera(self, move: CameraMove, progress: float, seed: int, duration_s: float,
               parallax: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Source positions of the grid's output pixels under the camera move (``media.motion``'s)."""
        matrix = camera_matrix(move, progress, self.width, self.height, seed, duration_s, parallax)
        return ((matrix[0, 0] * self.x + matrix[0, 1] * self.y + matrix[0, 2]).astype(np.float32),
                (matrix[1, 0] * self.x + matrix[1, 1] * self.y + matrix[1, 2]).astype(np.float32))


class _Flows:
    """The network's flows and masks for the in-between frames of a shot between consecutive ``images``,
    computed a batch of upcoming frames of the same keyframe pair at a time (a shot walks its frames in order)."""

    def __init__(self, net: IFNet, images: Sequence[np.ndarray], positions: Sequence[tuple[int, float]],
                 batch_size: int):
        self.net, self.positions, self.batch_size = net, positions, batch_size
        param = next(net.parameters())
        height, width = images[0].shape[:2]
        self.work_w, self.work_h = working_size(width, height, net.multiple)
        self.work = [F.interpolate(_tensor(image, param.device), size=(self.work_h, self.work_w), mode="bilinear",
                                   align_corners=False, antialias=True).to(param.dtype) for image in images]
        self.batch: dict[int, torch.Tensor] = {}

    def at(self, frame_index: int) -> torch.Tensor:
        """(1, 5, h, w) float32: the flows to the pair's two keyframes (working pixels) and the mask."""
        if frame_index not in self.batch:
            pair = self.positions[frame_index][0]
            upcoming = [index for index in range(frame_index, len(self.positions))
                        if self.positions[index][0] == pair and 0.0 < self.positions[index][1] < 1.0]
            upcoming = upcoming[:self.batch_size]
            work0 = self.work[pair]
            timestep = torch.tensor([self.positions[index][1] for index in upcoming], device=work0.device,
                                    dtype=work0.dtype).view(-1, 1, 1, 1)
            flow, mask = self.net(work0, self.work[pair + 1], timestep)
            fields = torch.cat((flow, mask), 1).float()
            self.batch = {index: fields[row:row + 1] for row, index in enumerate(upcoming)}
        return self.batch[frame_index]

    def tween(self, sources: Sequence[torch.Tensor], frame_index: int, x: torch.Tensor, y: torch.Tensor
              ) -> torch.Tensor:
        """The picture of ``sources`` (one per keyframe, (1, C, H, W)) at ``frame_index``, seen at source pixel
        positions ``x``, ``y`` given on the low-res output grid: a keyframe itself on its own frame, else both
        keyframes sampled along the network's flows and blended by its mask."""
        pair, t = self.positions[frame_index]
        height, width = sources[0].shape[-2:]
        if len(sources) == 1 or t <= 0.0 or t >= 1.0:
            source = sources[0 if len(sources) == 1 else pair + (t >= 1.0)]
            return _sample(source, _full(_normalized(x, y, width, height), height, width))
        sx, sy = width / self.work_w, height / self.work_h
        work_x, work_y = (x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5
        field = _sample(self.at(frame_index), _normalized(work_x, work_y, self.work_w, self.work_h))[0]
        maps = _full(torch.cat((_normalized(x + field[0] * sx, y + field[1] * sy, width, height),
                                _normalized(x + field[2] * sx, y + field[3] * sy, width, height),
                                field[None, None, 4]), 1), height, width)
        return torch.lerp(_sample(sources[pair + 1], maps[:, 2:4]), _sample(sources[pair], maps[:, 0:2]), maps[:, 4:5])


def _to_uint8(picture: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray((picture[0] * 255.0).round_().clamp_(0, 255).to(torch.uint8)
                                .permute(1, 2, 0).cpu().numpy())


def check_shot(keyframes: Sequence[np.ndarray], n_frames: int,
               layers: Sequence[KeyframeLayers] | None) -> None:
    if not keyframes:
        raise ValueError("a shot needs at least one keyframe")
    if n_frames < 1:
        raise ValueError(f"a shot needs at least one frame, not {n_frames}")
    shape = keyframes[0].shape
    if len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < 2:
        raise ValueError(f"keyframes must be (H, W, 3) RGB images, got {shape}")
    if any(image.shape != shape or image.dtype != np.uint8 for image in keyframes):
        raise ValueError("keyframes must all be uint8 images of the same size")
    if layers is not None and len(layers) != len(keyframes):
        raise ValueError(f"{len(layers)} keyframe layers for {len(keyframes)} keyframes")


def shot_positions(n_frames: int, n_keyframes: int) -> list[tuple[int, float]]:
    """(keyframe pair, eased position in it) of every frame, with the embedded backend's keyframe timing."""
    times = keyframe_times(n_frames, n_keyframes)
    return [segment_position(frame_index, times) for frame_index in range(n_frames)]


def shot_frames(net: IFNet, keyframes: Sequence[np.ndarray], camera: CameraMove, n_frames: int, seed: int,
                layers: Sequence[KeyframeLayers] | None = None, batch_size: int = BATCH_SIZE
                ) -> Iterator[np.ndarray]:
    """The shot's ``n_frames`` RGB uint8 frames, keyframe-sized: the keyframes on their frames, the network's
    in-betweens between them, through the camera move; with ``layers``, the characters and the set move apart
    (parallax) as in the embedded backend. Bad input fails here, before any frame is made."""
    check_shot(keyframes, n_frames, layers)
    return _stream(net, keyframes, camera, n_frames, seed, layers, batch_size)


def _stream(net: IFNet, keyframes: Sequence[np.ndarray], camera: CameraMove, n_frames: int, seed: int,
            layers: Sequence[KeyframeLayers] | None, batch_size: int) -> Iterator[np.ndarray]:
    device = next(net.parameters()).device
    height, width = keyframes[0].shape[:2]
    positions = shot_positions(n_frames, len(keyframes))
    duration_s = max(n_frames - 1, 1) / FPS
    grid = _Grid(width, height)
    flows = _Flows(net, keyframes, positions, batch_size)

    def on_device(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

    if layers is None:
        sources = [_tensor(image, device) for image in keyframes]
    else:
        # Character layer: the keyframe with the masks as alpha, and what the figures add to / take from the set.
        sources = [_tensor(np.dstack(character_layer(image, layer)), device)
                   for image, layer in zip(keyframes, layers)]
        plates = [layer.background for layer in layers]
        one_plate = all(np.array_equal(plate, plates[0]) for plate in plates)
        plate_sources = [_tensor(plate, device) for plate in (plates[:1] if one_plate else plates)]
        plate_flows = flows if one_plate else _Flows(net, plates, positions, batch_size)
        ground_y = ground_line(layers, height)

    @torch.inference_mode()
    def frame(frame_index: int) -> np.ndarray:
        progress = frame_index / max(n_frames - 1, 1)
        near_x, near_y = grid.camera(camera, progress, seed, duration_s)
        if layers is None:
            return _to_uint8(flows.tween(sources, frame_index, *on_device(near_x, near_y)))
        far_x, far_y = grid.camera(camera, progress, seed, duration_s, BACKGROUND_PARALLAX)
        set_x, set_y = background_source(near_x, near_y, far_x, far_y, ground_y, height)
        background = plate_flows.tween(plate_sources, frame_index, *on_device(set_x, set_y))
        figure = flows.tween(sources, frame_index, *on_device(near_x, near_y))
        picture = torch.lerp(background, figure[:, :3], figure[:, 3:4])
        # Saturating like the embedded compositor: lift first, then shade.
        return _to_uint8(picture.add_(figure[:, 4:7]).clamp_(max=1.0).sub_(figure[:, 7:10]))

    # Inference mode only while a frame is made, never across a yield (it would leak into the consumer).
    for frame_index in range(n_frames):
        yield frame(frame_index)


class RifeInterpolation:
    """Motion backend: Practical-RIFE in-betweens, the embedded backend's timing, camera moves and parallax."""

    name = "rife"

    def __init__(self, settings: ModelSettings):
        self.settings = settings
        self._calls: list[ModelCall] = []

    def _model(self) -> tuple[Path, IFNet]:
        model_dir = require_model(self.settings.motion_model, "motion", "motion_model (MICRODRAMA_MOTION_MODEL)",
                                  f"a Practical-RIFE v4.x train_log directory holding {CHECKPOINT}",
                                  needs=(CHECKPOINT,))
        device = pick_device(self.settings.device)
        checkpoint = model_dir / CHECKPOINT
        return model_dir, load_once("rife", checkpoint, device,
                                    lambda: load_ifnet(checkpoint, device, pick_dtype(device)))

    def frames(self, keyframes: Sequence[np.ndarray], camera: CameraMove, n_frames: int, seed: int,
               layers: Sequence[KeyframeLayers] | None = None) -> Iterator[np.ndarray]:
        check_shot(keyframes, n_frames, layers)
        batch_size = max(1, BATCH_SIZE // self.settings.batch_divisor)
        model_dir, net = self._model()
        param = next(net.parameters())
        positions = shot_positions(n_frames, len(keyframes))
        per_pair = [sum(1 for pair, t in positions if pair == index and 0.0 < t < 1.0)
                    for index in range(max(len(keyframes) - 1, 1))]
        height, width = keyframes[0].shape[:2]
        plates_differ = layers is not None and any(not np.array_equal(layer.background, layers[0].background)
                                                   for layer in layers)
        self._calls.append(ModelCall(
            stage="motion", backend=self.name, model=str(model_dir),
            # The checkpoint file itself: a train_log directory also holds RIFE's Python sources.
            weights_sha256=weights_sha256(model_dir / CHECKPOINT), device=str(param.device), seed=seed, prompt="",
            params={"frames": n_frames, "size": [width, height], "keyframes": len(keyframes),
                    "keyframe_frames": keyframe_times(n_frames, len(keyframes)), "camera": camera.value,
                    "in_betweens": sum(per_pair), "batch_size": batch_size,
                    "network_calls": sum(math.ceil(count / batch_size) for count in per_pair) * (1 + plates_differ),
                    "working_size": list(working_size(width, height, net.multiple)),
                    "scales": list(net.config.scales), "dtype": str(param.dtype).removeprefix("torch."),
                    "parallax": layers is not None, "architecture": asdict(net.config)}))
        return _stream(net, keyframes, camera, n_frames, seed, layers, batch_size)

    def take_calls(self) -> list[ModelCall]:
        calls, self._calls = self._calls, []
        return calls

"""The RIFE motion backend with a tiny random IFNet saved the way Practical-RIFE releases are: ``flownet.pkl``, a
state dict whose keys carry DistributedDataParallel's ``module.`` prefix."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from microdrama_assets.assets import shot_clip
from microdrama_assets.audit import weights_sha256
from microdrama_assets.backends import ModelSettings
from microdrama_assets.media import motion
from microdrama_assets.media.manifest import CameraMove
from microdrama_assets.media.motion import KeyframeLayers, keyframe_times
from microdrama_assets.media.video_io import read_rgb_frames
from microdrama_assets.ml import interpolation
from microdrama_assets.ml.interpolation import CHECKPOINT, IFNet, RifeConfig, RifeInterpolation, load_ifnet, shot_frames
from microdrama_assets.ml.runtime import MissingModel
from microdrama_assets.resources import BackendSettings

TINY = RifeConfig(head_hidden=4, head_out=4, block_widths=(8, 8), block_outputs=7, carry_features=True, res_convs=1)
WIDTH, HEIGHT = 72, 128  # small 9:16 frames, multiples of the tiny net's 8: the network sees them unscaled
CPU = torch.device("cpu")


def save_checkpoint(directory: Path, net: IFNet) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({f"module.{key}": value for key, value in net.state_dict().items()}, directory / CHECKPOINT)
    return directory


def random_net() -> IFNet:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return IFNet(TINY).eval()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("rife"), random_net())


@pytest.fixture(scope="module")
def net(tiny_model) -> IFNet:
    return load_ifnet(tiny_model / CHECKPOINT, CPU, torch.float32)


def keyframes(count: int, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(count)]


def test_module_names_and_shapes_are_practical_rifes():
    """The state dict keys and input widths of Practical-RIFE's IFNet, so a released flownet.pkl loads."""
    v425 = IFNet().state_dict()
    assert RifeConfig.from_state_dict(v425) == RifeConfig()
    assert v425["block0.conv0.0.0.weight"].shape[1] == 7 + 32
    assert v425["block1.conv0.0.0.weight"].shape[1] == 8 + 4 + 8 + 32
    assert v425["block4.lastconv.0.weight"].shape == (32, 4 * 13, 4, 4)
    assert v425["encode.cnn3.weight"].shape == (16, 16, 4, 4)
    assert v425["block2.convblock.7.beta"].shape == (1, 96, 1, 1) and "block5.conv0.0.0.weight" not in v425
    v48 = RifeConfig(head_hidden=32, head_out=8, block_widths=(192, 128, 96, 64), block_outputs=6, carry_features=False)
    four_blocks = IFNet(v48).state_dict()
    assert four_blocks["block0.conv0.0.0.weight"].shape[1] == 7 + 16
    assert four_blocks["block1.conv0.0.0.weight"].shape[1] == 8 + 4 + 16
    assert RifeConfig.from_state_dict(four_blocks) == v48 and v48.scales == (8, 4, 2, 1)


def test_checkpoint_loads_with_its_weights(tiny_model, net):
    assert net.config == TINY and not net.training
    original = random_net()
    images = torch.rand(2, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))
    timestep = torch.tensor([0.3, 0.6]).view(-1, 1, 1, 1)
    with torch.no_grad():
        expected, got = original(images[:1], images[1:], timestep), net(images[:1], images[1:], timestep)
    assert expected[0].shape == (2, 4, HEIGHT, WIDTH) and expected[1].shape == (2, 1, HEIGHT, WIDTH)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    assert not torch.equal(got[0][0], got[0][1])  # the timestep reaches the flow


def test_mismatched_checkpoint_fails_clearly(tmp_path, tiny_model):
    state = torch.load(tiny_model / CHECKPOINT, weights_only=True)
    del state["module.block1.convblock.0.beta"]
    torch.save(state, tmp_path / "missing.pkl")
    with pytest.raises(ValueError, match="(?s)does not fit Practical-RIFE.*block1.convblock.0.beta"):
        load_ifnet(tmp_path / "missing.pkl", CPU, torch.float32)
    torch.save({"module.conv.weight": torch.zeros(1)}, tmp_path / "other.pkl")
    with pytest.raises(ValueError, match="not a Practical-RIFE v4.x IFNet state dict"):
        load_ifnet(tmp_path / "other.pkl", CPU, torch.float32)


@pytest.mark.parametrize("n_keyframes,n_frames", [(1, 5), (2, 11), (3, 12), (3, 2)])
def test_exact_frame_count_and_keyframes_on_their_frames(net, n_keyframes, n_frames):
    keys = keyframes(n_keyframes)
    frames = list(shot_frames(net, keys, CameraMove.static, n_frames, seed=1, batch_size=3))
    assert len(frames) == n_frames
    assert all(frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8 for frame in frames)
    times = keyframe_times(n_frames, n_keyframes)
    for index, time in enumerate(times):
        if times.index(time) == index:  # a frame shared by two keyframes (too short a shot) shows the first
            assert np.array_equal(frames[time], keys[index])
    if n_keyframes > 1 and n_frames > n_keyframes:
        in_between = frames[1].astype(int)
        assert np.abs(in_between - keys[0]).mean() > 5 and np.abs(in_between - keys[1]).mean() > 5


def test_deterministic_and_seeded(net):
    keys = keyframes(2)
    first = list(shot_frames(net, keys, CameraMove.handheld, 9, seed=4))
    again = list(shot_frames(net, keys, CameraMove.handheld, 9, seed=4))
    other_seed = list(shot_frames(net, keys, CameraMove.handheld, 9, seed=5))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[4], other_seed[4])  # the hand-held shake follows the seed


def set_last_block(net: IFNet, flow_x_to_first: float, mask_logit: float) -> IFNet:
    """A network with no learned motion: zero weights, then the last block's output biases set so every
    in-between has a constant flow to the first keyframe and a constant fusion mask."""
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
        last = getattr(net, f"block{len(net.config.block_widths) - 1}").lastconv[0]
        # PixelShuffle(2) makes channel c out of the last layer's channels 4c..4c+3.
        last.bias[0:4] = flow_x_to_first
        last.bias[16:20] = mask_logit
    return net


def test_in_betweens_follow_the_networks_flow_and_mask():
    x = np.tile(np.linspace(0, 250, WIDTH).astype(np.uint8)[None, :, None], (HEIGHT, 1, 3))
    first, second = x, np.full_like(x, 40)
    # Mask 1/2 and no flow: the average of the keyframes.
    average = list(shot_frames(set_last_block(random_net(), 0.0, 0.0), [first, second], CameraMove.static, 5, 0))
    assert np.abs(average[2].astype(int) - (first.astype(int) + second) / 2).max() <= 1
    # Mask ~1 and a flow 3 px right: the first keyframe sampled 3 px to the right (clamped at the edge).
    shifted = list(shot_frames(set_last_block(random_net(), 3.0, 30.0), [first, second], CameraMove.static, 5, 0))
    expected = np.concatenate([first[:, 3:], np.repeat(first[:, -1:], 3, axis=1)], axis=1)
    assert np.abs(shifted[2].astype(int) - expected).max() <= 1


def layered_keyframe(offset: int) -> tuple[np.ndarray, KeyframeLayers]:
    rng = np.random.default_rng(9)
    plate = np.repeat(np.repeat(rng.integers(30, 200, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8), 8, 0), 8, 1)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[40:100, 20 + offset:44 + offset] = 255
    image = plate.copy()
    image[mask > 0] = (220, 60, 60)
    return image, KeyframeLayers(plate, {"maya": mask})


def test_layers_give_the_embedded_backends_parallax(net):
    image, layers = layered_keyframe(0)
    ours = list(shot_frames(net, [image], CameraMove.pan_right, 6, 2, [layers]))
    embedded = list(motion.shot_frames([image], CameraMove.pan_right, 6, 2, [layers]))
    flat = list(shot_frames(net, [image], CameraMove.pan_right, 6, 2))
    assert np.array_equal(next(shot_frames(net, [image], CameraMove.static, 2, 2, [layers])), image)
    assert all(np.abs(mine.astype(int) - theirs).mean() < 2.0 for mine, theirs in zip(ours, embedded))
    # The figure moves with the camera as a flat frame would; the set behind it moves less.
    difference = np.abs(ours[-1].astype(int) - flat[-1])
    assert difference[50:90, 26:40].max() == 0 and difference[:, 56:].mean() > 3.0


def test_layers_between_keyframes(net):
    (first, first_layers), (second, second_layers) = layered_keyframe(0), layered_keyframe(6)
    frames = list(shot_frames(net, [first, second], CameraMove.static, 7, 0, [first_layers, second_layers]))
    assert len(frames) == 7 and np.array_equal(frames[0], first) and np.array_equal(frames[-1], second)
    # Away from the figure the set is the plate on every frame: the figure's layer does not drag it along.
    assert all(np.array_equal(frame[:, 56:], first_layers.background[:, 56:]) for frame in frames)


def test_bad_input_fails_before_any_frame(net):
    with pytest.raises(ValueError, match="at least one keyframe"):
        shot_frames(net, [], CameraMove.static, 3, 0)
    with pytest.raises(ValueError, match="2 keyframe layers for 1 keyframes"):
        shot_frames(net, keyframes(1), CameraMove.static, 3, 0, [layered_keyframe(0)[1]] * 2)
    with pytest.raises(ValueError, match="same size"):
        shot_frames(net, [keyframes(1)[0], keyframes(1)[0][:64]], CameraMove.static, 3, 0)


def test_backend_records_the_call(tiny_model, monkeypatch):
    batches = []
    forward = IFNet.forward
    monkeypatch.setattr(IFNet, "forward", lambda self, *args: batches.append(args[2].shape[0]) or forward(self, *args))
    backend = RifeInterpolation(ModelSettings(motion_model=str(tiny_model), device="cpu"))
    frames = list(backend.frames(keyframes(3), CameraMove.push_in, 20, seed=7))
    assert len(frames) == 20 and batches == [8, 1, 8]  # 9 then 8 in-betweens, in batches of 8
    [call] = backend.take_calls()
    assert backend.take_calls() == []
    assert call.stage == "motion" and call.backend == "rife" and call.seed == 7 and call.device == "cpu"
    assert call.weights_sha256 == weights_sha256(tiny_model / CHECKPOINT)
    assert call.params["in_betweens"] == 17 and call.params["network_calls"] == len(batches)
    assert call.params["keyframe_frames"] == [0, 10, 19] and call.params["working_size"] == [WIDTH, HEIGHT]


def test_missing_model_names_the_setting(tmp_path):
    with pytest.raises(MissingModel, match="motion_model.*MICRODRAMA_MOTION_MODEL"):
        RifeInterpolation(ModelSettings(motion_model="")).frames(keyframes(1), CameraMove.static, 2, 0)
    with pytest.raises(MissingModel, match=f"{tmp_path}.*lacks {CHECKPOINT}"):
        RifeInterpolation(ModelSettings(motion_model=str(tmp_path))).frames(keyframes(1), CameraMove.static, 2, 0)


def test_shot_clip_through_the_asset(ml_episode, tiny_model, monkeypatch):
    shot = ml_episode.shot
    embedded_middle = next(itertools.islice(read_rgb_frames(shot.clip), 20, None))
    # A smaller working size keeps the CPU test quick; the frames are still made at full resolution.
    monkeypatch.setattr(interpolation, "WORK_LONG_SIDE", 256)
    result = ml_episode.materialize([shot_clip], BackendSettings(motion="rife", motion_model=str(tiny_model),
                                                                 device="cpu"))
    n_frames = ml_episode.episode.manifest().shots[0].frames
    frames = list(read_rgb_frames(shot.clip))
    assert n_frames == 45 and len(frames) == n_frames
    assert all(frame.shape == (1920, 1080, 3) for frame in frames)
    # The push-in starts on the first keyframe; in between are the random network's frames, not the embedded's.
    assert np.abs(frames[0].astype(int) - shot.keyframe_images()[0]).mean() < 2
    assert (np.abs(frames[20].astype(int) - embedded_middle).max(axis=2) > 30).mean() > 0.01

    metadata = result.asset_materializations_for_node("shot_clip")[0].metadata
    digest = weights_sha256(tiny_model / CHECKPOINT)
    assert metadata["motion_backend"].value == "rife" and digest[:12] in metadata["models"].value
    [call] = json.loads(Path(metadata["model_calls_path"].value).read_text())
    assert call["weights_sha256"] == digest and call["model"] == str(tiny_model)
    assert call["params"]["frames"] == n_frames and call["params"]["parallax"] is True
    assert call["params"]["in_betweens"] == n_frames - 2 and call["params"]["working_size"] == [144, 256]


def test_shot_clip_without_a_model_fails_naming_the_setting(ml_episode, tmp_path):
    result = ml_episode.materialize([shot_clip], BackendSettings(motion="rife", motion_model=str(tmp_path / "nope")),
                                    raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.step_failure_data.error)  # the step error and its cause, our MissingModel
    assert "MICRODRAMA_MOTION_MODEL" in message and str(tmp_path / "nope") in message

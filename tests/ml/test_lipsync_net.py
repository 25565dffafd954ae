"""The Wav2Lip backend with a tiny random network saved in the published checkpoint format."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from microdrama_assets.assets import composited_shot
from microdrama_assets.audit import weights_sha256
from microdrama_assets.backends import ModelSettings
from microdrama_assets.media.lipsync import MouthPath
from microdrama_assets.media.manifest import FPS
from microdrama_assets.media.speech import Speech
from microdrama_assets.media.video_io import probe_video, read_rgb_frames
from microdrama_assets.ml import lipsync_net
from microdrama_assets.ml.lipsync_net import (
    FACE_SIZE,
    MEL_BINS,
    MEL_STEP,
    FaceBox,
    Wav2Lip,
    Wav2LipSync,
    crop_face,
    load_wav2lip,
    mel_window,
    paste_lower_face,
    speaker_mel,
)
from microdrama_assets.ml.runtime import MissingModel
from microdrama_assets.resources import BackendSettings

TINY = 1 / 16  # every layer 1/16 of the published width: ~144k parameters


def save_tiny_checkpoint(directory: Path, seed: int = 0, multiplier: float = TINY) -> Path:
    """A random network saved the way the published checkpoints are: DataParallel keys inside ``state_dict``."""
    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = Wav2Lip(multiplier)
        # Random running statistics too, so a loader that skipped the batch-norm buffers would be caught.
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    torch.save({"state_dict": {f"module.{key}": value for key, value in network.state_dict().items()},
                "global_step": 0}, directory / "wav2lip_gan.pth")
    (directory / "config.json").write_text(json.dumps({"channel_multiplier": multiplier}))
    return directory


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("wav2lip"))


def tone(seconds: float, seed: int = 1, sample_rate: int = 48000) -> Speech:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + rng.uniform(-0.5, 0.5, t.size))).astype(np.float32)
    return Speech(samples, sample_rate, ())


def still_frames(n_frames: int, height: int = 240, width: int = 200) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n_frames)]


def mouth(n_frames: int, xy=(100.0, 140.0), width: float = 30.0) -> MouthPath:
    return MouthPath(np.tile(np.array(xy, float), (n_frames, 1)), np.full(n_frames, width), (180, 60, 70))


def animate(model: Path, frames, voices, n_frames, batch_size=4, mouths=None) -> tuple[list[np.ndarray], Wav2LipSync]:
    backend = Wav2LipSync(ModelSettings(lipsync_model=str(model), device="cpu"), batch_size=batch_size)
    out = list(backend.animate(iter([f.copy() for f in frames]), mouths or {"maya": mouth(n_frames)}, voices,
                               n_frames))
    return out, backend


def test_layout_matches_the_published_generator():
    published = Wav2Lip().state_dict()
    assert published["face_encoder_blocks.0.0.conv_block.0.weight"].shape == (16, 6, 7, 7)
    assert published["audio_encoder.12.conv_block.0.weight"].shape == (512, 512, 1, 1)
    assert published["face_decoder_blocks.1.0.conv_block.0.weight"].shape == (1024, 512, 3, 3)
    assert published["face_decoder_blocks.6.0.conv_block.0.weight"].shape == (160, 64, 3, 3)
    assert published["output_block.0.conv_block.0.weight"].shape == (32, 80, 3, 3)
    assert published["output_block.1.weight"].shape == (3, 32, 1, 1)
    assert set(Wav2Lip(TINY).state_dict()) == set(published)


def test_loader_strips_the_data_parallel_prefix_and_checks_the_width(tiny_model, tmp_path):
    network = load_wav2lip(tiny_model, torch.device("cpu"), torch.float32)
    saved = torch.load(tiny_model / "wav2lip_gan.pth", weights_only=True)["state_dict"]
    assert not network.training
    for key, value in network.state_dict().items():
        assert torch.equal(value, saved[f"module.{key}"]), key
    out = network(torch.zeros(3, 1, MEL_BINS, MEL_STEP), torch.rand(3, 6, FACE_SIZE, FACE_SIZE))
    assert out.shape == (3, 3, FACE_SIZE, FACE_SIZE) and 0 <= out.min() and out.max() <= 1

    wrong = tmp_path / "wrong"
    save_tiny_checkpoint(wrong)
    (wrong / "config.json").write_text(json.dumps({"channel_multiplier": 1 / 8}))
    with pytest.raises(ValueError, match="channel_multiplier 0.125"):
        load_wav2lip(wrong, torch.device("cpu"), torch.float32)


def test_mel_window_is_centred_on_its_frame():
    n_frames = 30
    burst_frame = 20
    # Silence except a click-long burst during frame 20's display time.
    burst = tone(1 / FPS)
    mel = speaker_mel([(burst_frame / FPS, burst)], n_frames)
    for index in (0, n_frames - 1):
        assert mel_window(mel, index).shape == (MEL_BINS, MEL_STEP)
    assert np.all(mel_window(mel, 5) == mel.min())  # far from the burst: silence only
    loudest = [int(mel_window(mel, index).mean(axis=0).argmax()) for index in range(17, 24)]
    # 80 mel frames a second against 30 video frames: the burst walks back ~2.7 columns per frame and sits in
    # the middle of its own frame's window.
    assert loudest[3] in (7, 8)
    assert all(a > b for a, b in itertools.pairwise(loudest))
    with pytest.raises(ValueError, match="outside"):
        mel_window(mel, n_frames + 10)


def test_crop_and_paste_touch_only_the_lower_face_box():
    frame = still_frames(1)[0]
    for box in (FaceBox.around_mouth((100, 140), 30), FaceBox.around_mouth((190, 230), 30)):  # inside; over the edge
        original = frame.copy()
        crop = crop_face(frame, box)
        assert crop.shape == (FACE_SIZE, FACE_SIZE, 3) and np.array_equal(frame, original)
        paste_lower_face(frame, box, np.zeros((FACE_SIZE, FACE_SIZE, 3), np.float32))
        changed = np.any(frame != original, axis=2)
        rows, cols = np.nonzero(changed)
        assert rows.min() >= box.y0 + box.side // 2 and rows.max() < box.y0 + box.side
        assert cols.min() >= box.x0 and cols.max() < box.x0 + box.side
        # The middle of the lower half is replaced outright; the feathered rim only partly.
        mid_y, mid_x = box.y0 + (3 * box.side) // 4, box.x0 + box.side // 2
        if 0 <= mid_y < frame.shape[0] and 0 <= mid_x < frame.shape[1]:
            assert np.all(frame[mid_y, mid_x] == 0)
        frame = original

    # Pasting a face's own crop back changes it only by the resampling.
    box = FaceBox.around_mouth((100, 140), 30)
    smooth = np.zeros((240, 200, 3), np.uint8)
    smooth[:] = np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None]
    before = smooth.copy()
    paste_lower_face(smooth, box, crop_face(smooth, box).astype(np.float32))
    assert np.abs(smooth.astype(int) - before).max() <= 3


def test_silent_frames_pass_through_unchanged(tiny_model):
    n_frames = 15
    frames = still_frames(n_frames)
    voices = {"maya": [(0.2, tone(0.2))], "victor": [(0.0, tone(0.1))]}  # victor has no mouth in this shot
    out, backend = animate(tiny_model, frames, voices, n_frames)
    spoken = set(range(6, 12))  # 0.2 s to 0.4 s at 30 fps
    box = FaceBox.around_mouth((100, 140), 30)
    for index, (before, after) in enumerate(zip(frames, out)):
        if index in spoken:
            assert not np.array_equal(before, after), index
            outside = np.ones(before.shape[:2], bool)
            outside[box.y0 + box.side // 2: box.y0 + box.side, box.x0: box.x0 + box.side] = False
            assert np.array_equal(before[outside], after[outside])
        else:
            assert np.array_equal(before, after), index
    calls = backend.take_calls()
    assert [(c.prompt, c.params["frames_synced"]) for c in calls] == [("maya", len(spoken))]
    assert calls[0].weights_sha256 == weights_sha256(tiny_model) and calls[0].stage == "lipsync"
    assert backend.take_calls() == []


def test_batches_give_the_same_frames_as_batch_size_one(tiny_model):
    n_frames = 12
    frames = still_frames(n_frames)
    # Both speak in frames 3-5: with 4 faces a batch, frame 3's pair is split between two network calls.
    voices = {"maya": [(0.0, tone(0.2, seed=2))], "victor": [(0.1, tone(0.2, seed=3))]}
    mouths = {"maya": mouth(n_frames), "victor": mouth(n_frames, xy=(60.0, 60.0), width=20.0)}
    one, _ = animate(tiny_model, frames, voices, n_frames, batch_size=1, mouths=mouths)
    batched, backend = animate(tiny_model, frames, voices, n_frames, batch_size=4, mouths=mouths)
    assert len(batched) == n_frames
    assert sum(not np.array_equal(a, b) for a, b in zip(frames, batched)) == 9  # 0.0-0.3 s: frames 0-8
    assert all(np.array_equal(a, b) for a, b in zip(one, batched))
    calls = backend.take_calls()
    assert {c.prompt: c.params["frames_synced"] for c in calls} == {"maya": 6, "victor": 6}
    assert calls[0].params["batch_size"] == 4 and calls[0].params["network_calls"] == 4


def test_yields_exactly_the_frames_it_is_given(tiny_model):
    n_frames = 9
    voices = {"maya": [(0.0, tone(0.3))]}
    out, _ = animate(tiny_model, still_frames(n_frames), voices, n_frames)
    assert len(out) == n_frames and all(f.shape == (240, 200, 3) and f.dtype == np.uint8 for f in out)
    with pytest.raises(ValueError, match="more arrived"):
        animate(tiny_model, still_frames(n_frames + 1), voices, n_frames)


@pytest.mark.parametrize("where", ["", "absent", "empty"])
def test_missing_model_names_the_setting(tmp_path, where):
    path = {"": "", "absent": str(tmp_path / "nope"), "empty": str(tmp_path)}[where]
    backend = Wav2LipSync(ModelSettings(lipsync_model=path, device="cpu"))  # cheap: nothing loads yet
    with pytest.raises(MissingModel, match="MICRODRAMA_LIPSYNC_MODEL") as failure:
        list(backend.animate(iter(still_frames(2)), {"maya": mouth(2)}, {"maya": [(0.0, tone(0.05))]}, 2))
    assert "wav2lip" in str(failure.value)


def test_composited_shot_with_wav2lip(ml_episode, tiny_model):
    settings = BackendSettings(planner="embedded", keyframes="embedded", voice="embedded", motion="embedded",
                               lipsync="wav2lip", lipsync_model=str(tiny_model), device="cpu")
    result = ml_episode.materialize([composited_shot], settings)
    shot = ml_episode.shot
    frames = list(read_rgb_frames(shot.composited))
    probe = probe_video(shot.composited)
    n_frames = ml_episode.episode.manifest().shots[0].frames
    assert n_frames == round(1.5 * FPS)
    assert (probe.width, probe.height) == (1080, 1920)
    assert len(frames) == probe.frames == n_frames
    assert frames[0].shape == (1920, 1080, 3)

    metadata = result.asset_materializations_for_node("composited_shot")[0].metadata
    digest = weights_sha256(tiny_model)
    assert metadata["lipsync_backend"].value == "wav2lip"
    assert digest[:12] in metadata["models"].value
    calls = json.loads(Path(metadata["model_calls_path"].value).read_text())
    assert calls and all(call["weights_sha256"] == digest and call["backend"] == "wav2lip" for call in calls)
    # The embedded voices really speak in this shot, so the network ran on every frame its speaker is heard.
    dialogue = json.loads(shot.dialogue_json.read_text())
    heard = {line["speaker"] for line in dialogue["lines"]}
    assert {call["prompt"] for call in calls} <= heard
    assert all(0 < call["params"]["frames_synced"] <= n_frames for call in calls)
    assert lipsync_net.DEFAULT_BATCH["cpu"] == calls[0]["params"]["batch_size"]

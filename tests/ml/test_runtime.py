"""What every model backend shares: local model paths, the device, loading once per process, weights hashes."""

import pytest
import torch

from microdrama_assets.audit import weights_sha256
from microdrama_assets.ml.runtime import MissingModel, load_once, pick_device, pick_dtype, require_model


def test_a_model_loads_once_per_process_and_again_when_its_weights_change(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights v1")
    loads = []

    def loader():
        loads.append(1)
        return object()

    first = load_once("probe", tmp_path, torch.device("cpu"), loader)
    assert load_once("probe", tmp_path, torch.device("cpu"), loader) is first and len(loads) == 1
    (tmp_path / "model.safetensors").write_bytes(b"weights v2, retrained")
    assert load_once("probe", tmp_path, torch.device("cpu"), loader) is not first and len(loads) == 2


def test_the_weights_hash_covers_weights_and_configs_but_not_docs(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    digest = weights_sha256(tmp_path)
    (tmp_path / "README.md").write_text("notes")
    assert weights_sha256(tmp_path) == digest
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x01" * 64)
    assert weights_sha256(tmp_path) != digest
    assert weights_sha256(tmp_path / "config.json") != weights_sha256(tmp_path)


def test_missing_models_are_named_with_their_setting_and_what_belongs_there(tmp_path):
    with pytest.raises(MissingModel, match=r"set motion_model \(MICRODRAMA_MOTION_MODEL\) to a RIFE directory"):
        require_model("", "motion", "motion_model (MICRODRAMA_MOTION_MODEL)", "a RIFE directory")
    with pytest.raises(MissingModel, match=r"lacks flownet.pkl; expected a RIFE directory"):
        require_model(tmp_path, "motion", "motion_model", "a RIFE directory", needs=["flownet.pkl"])
    assert require_model(tmp_path, "motion", "motion_model", "a RIFE directory") == tmp_path


def test_the_device_is_cuda_in_half_precision_when_present_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_dtype(torch.device("cuda")) == torch.float16 and pick_dtype(torch.device("cpu")) == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            pick_device("cuda")


def test_backends_are_chosen_per_stage_by_configuration_or_environment(monkeypatch, tmp_path):
    from microdrama_assets.backends import EspeakVoice
    from microdrama_assets.ml.planner_lm import TransformersPlanner
    from microdrama_assets.resources import BackendSettings

    monkeypatch.setenv("MICRODRAMA_PLANNER_BACKEND", "transformers")
    monkeypatch.setenv("MICRODRAMA_PLANNER_MODEL", str(tmp_path))
    settings = BackendSettings()
    planner = settings.planner_backend()
    assert isinstance(planner, TransformersPlanner) and planner.settings.planner_model == str(tmp_path)
    assert isinstance(settings.voice_backend(), EspeakVoice)
    with pytest.raises(ValueError, match=r"unknown motion backend 'flowy'; available: \['embedded', 'rife'\]"):
        BackendSettings(motion="flowy").motion_backend()


def test_the_steps_that_may_run_a_model_share_the_gpu_pool():
    from microdrama_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    pooled = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).pools == {"gpu"}}
    assert pooled == {"episode_manifest", "keyframes", "shot_clip", "dialogue_audio", "composited_shot"}


def test_a_retry_after_the_gpu_ran_out_of_memory_moves_the_backend_and_shrinks_its_batch(tmp_path):
    from microdrama_assets.execution import ModelPlacement
    from microdrama_assets.ml.lipsync_net import DEFAULT_BATCH
    from microdrama_assets.resources import BackendSettings

    settings = BackendSettings(lipsync="wav2lip", lipsync_model=str(tmp_path), device="auto")
    assert settings.lipsync_backend().settings.batch_divisor == 1
    moved = settings.lipsync_backend(ModelPlacement("cpu", 2))
    assert moved.device.type == "cpu" and moved.batch_size == DEFAULT_BATCH["cpu"] // 2

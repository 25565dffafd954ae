"""Scale-out settings: the executor each deployment picks, what every step of every job asks of it (pool, retry
policy, the Kubernetes pod dagster-k8s would make for it, its Celery queue), run retries, backfills, the code
location files, and the GPU out-of-memory fallback in a real run with retries."""

import importlib
import sys
from pathlib import Path

import pytest
import yaml
from dagster import AssetExecutionContext, Backoff, DagsterInstance, Jitter, RetryPolicy, asset, materialize
from dagster._core.execution.api import create_execution_plan

from microdrama_assets.assets import ALL_ASSETS
from microdrama_assets.definitions import make_definitions
from microdrama_assets.execution import (CELERY_QUEUE_TAG, ENCODE_POOL, EXECUTOR_ENV, GPU_POOL,
                                         MODEL_RETRY_POLICY, OBJECT_STORE_RETRY_POLICY, ModelPlacement,
                                         executor_named, model_placement, placement_for_attempt)

ROOT = Path(__file__).resolve().parents[1]
JOBS = ("plan_episode", "render_shot", "assemble_episode", "publish_episode", "analyze_engagement")
# Steps whose backend may load a model onto the GPU, and the encode-heavy ones.
MODEL_STEPS = {"episode_manifest", "dialogue_audio", "keyframes", "shot_clip", "composited_shot"}
ENCODE_STEPS = {"shot_renditions", "hls_package", "episode_master"}
OBJECT_STORE_STEPS = {"published_episode"}


@pytest.mark.parametrize("name", ["multiprocess", "in_process", "k8s", "celery"])
def test_every_job_runs_on_the_chosen_executor(name, monkeypatch):
    if name in ("k8s", "celery"):
        pytest.importorskip(f"dagster_{name}")
    monkeypatch.setenv(EXECUTOR_ENV, name)  # what a deployment sets
    from_environment = make_definitions(data_root="/tmp/unused")
    from_argument = make_definitions(data_root="/tmp/unused", executor=name)
    for defs in (from_environment, from_argument):
        assert {defs.resolve_job_def(job).executor_def.name for job in JOBS} == {name}


def test_default_executor_is_multiprocess_and_bad_names_are_refused(monkeypatch):
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    assert make_definitions(data_root="/tmp/unused").resolve_job_def("render_shot").executor_def.name == "multiprocess"
    monkeypatch.setenv(EXECUTOR_ENV, "dask")
    with pytest.raises(ValueError, match="unknown executor 'dask'.*multiprocess, in_process, k8s, celery"):
        make_definitions(data_root="/tmp/unused")


def _steps(executor: str):
    defs = make_definitions(data_root="/tmp/unused", executor=executor)
    for job_name in JOBS:
        job = defs.resolve_job_def(job_name)
        for step in create_execution_plan(job).get_all_steps_in_topo_order():
            yield job, step


def test_pools_and_retry_policies_per_step():
    seen = set()
    for job, step in _steps("multiprocess"):
        name = step.key
        seen.add(name)
        expected_pool = GPU_POOL if name in MODEL_STEPS else ENCODE_POOL if name in ENCODE_STEPS else None
        assert step.pool == expected_pool, name
        expected_policy = (MODEL_RETRY_POLICY if name in MODEL_STEPS
                           else OBJECT_STORE_RETRY_POLICY if name in OBJECT_STORE_STEPS else None)
        assert job.get_retry_policy_for_handle(step.node_handle) == expected_policy, name
    assert MODEL_STEPS | ENCODE_STEPS | OBJECT_STORE_STEPS <= seen


def test_retry_delays_back_off_with_jitter():
    for policy in (MODEL_RETRY_POLICY, OBJECT_STORE_RETRY_POLICY):
        assert policy.backoff == Backoff.EXPONENTIAL and policy.jitter == Jitter.PLUS_MINUS
        for attempt in range(1, policy.max_retries + 1):
            base = (2 ** attempt - 1) * policy.delay
            delays = {policy.calculate_delay(attempt) for _ in range(50)}
            assert all(base - policy.delay <= d <= base + policy.delay for d in delays)
            assert len(delays) > 1  # jittered: steps that failed together do not retry together


def _step_pod(step):
    """The Kubernetes Job dagster-k8s's k8s_job_executor makes for a step, from the step's tags."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (DagsterK8sJobConfig, construct_dagster_k8s_job, get_k8s_job_name,
                                 get_user_defined_k8s_config)

    context = K8sContainerContext(namespace="microdrama").merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step.tags)))
    job_config = DagsterK8sJobConfig(job_image="registry.example/microdrama:1", dagster_home="/opt/dagster/home",
                                     instance_config_map="dagster-instance")
    job_name = f"dagster-step-{get_k8s_job_name('8f0e6a3c-run', step.key)}"  # as the executor names it
    job = construct_dagster_k8s_job(job_config, ["dagster", "api", "execute_step"], job_name,
                                    user_defined_k8s_config=context.run_k8s_config, component="step_worker")
    return job.spec.template.spec


def test_k8s_pods_ask_for_a_gpu_for_model_steps_and_cores_for_encodes():
    pytest.importorskip("dagster_k8s")
    for _, step in _steps("k8s"):
        pod = _step_pod(step)
        resources = pod.containers[0].resources
        requests, limits = (resources.requests or {}) if resources else {}, (resources.limits or {}) if resources else {}
        if step.key in MODEL_STEPS:
            assert requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"] == "1", step.key
            assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in pod.tolerations), step.key
        else:
            assert "nvidia.com/gpu" not in requests and "nvidia.com/gpu" not in limits, step.key
            assert not pod.tolerations, step.key
        if step.key in ENCODE_STEPS:
            assert int(requests["cpu"]) >= 4 and int(limits["cpu"]) >= int(requests["cpu"]), step.key
            assert limits["memory"].endswith("Gi"), step.key
        elif step.key not in MODEL_STEPS:
            assert not requests and not limits, step.key  # the namespace's defaults


def test_celery_queues_route_model_and_encode_steps():
    pytest.importorskip("dagster_celery")
    from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

    assert CELERY_QUEUE_TAG == DAGSTER_CELERY_QUEUE_TAG
    for _, step in _steps("celery"):
        expected = "gpu" if step.key in MODEL_STEPS else "encode" if step.key in ENCODE_STEPS else None
        assert step.tags.get(CELERY_QUEUE_TAG) == expected, step.key  # None: the default queue


def test_shot_runs_are_retried_and_backfills_run_one_partition_per_run():
    defs = make_definitions(data_root="/tmp/unused")
    assert defs.resolve_job_def("render_shot").tags["dagster/max_retries"] == "3"
    # Every asset reads a single partition key: a single-run (ranged) backfill would break them.
    for asset_def in ALL_ASSETS:
        policy = asset_def.backfill_policy
        assert policy is None or policy.max_partitions_per_run == 1, asset_def.key


def test_code_location_files_load_the_definitions():
    cloud = yaml.safe_load((ROOT / "dagster_cloud.yaml").read_text(encoding="utf-8"))
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text(encoding="utf-8"))
    [location] = cloud["locations"]
    [entry] = workspace["load_from"]
    assert location["location_name"] == entry["python_module"]["location_name"]
    assert (ROOT / location["build"]["directory"]).resolve() == ROOT
    module = importlib.import_module(location["code_source"]["module_name"])
    assert entry["python_module"]["module_name"] == module.__name__
    assert set(JOBS) <= {job.name for job in module.defs.resolve_all_job_defs()}


# --- the GPU out-of-memory fallback, in a real run with step retries ------------------------------------------

def test_placement_moves_to_a_smaller_batch_then_the_cpu():
    assert model_placement("cuda", 0) == ModelPlacement("cuda", 1)
    assert model_placement("cuda", 1) == ModelPlacement("cuda", 2)
    assert model_placement("cuda:1", 2) == ModelPlacement("cpu", 1)
    assert model_placement("cpu", 1) == ModelPlacement("cpu", 1)
    assert ModelPlacement("cuda", 2).batch(8) == 4 and ModelPlacement("cuda", 4).batch(2) == 1


def _gpu_step(failures: list[BaseException], placements: list[ModelPlacement]):
    """A model step that fails with the given errors while it runs on the GPU (as a backend would), recording
    where each attempt ran."""
    @asset(retry_policy=RetryPolicy(max_retries=len(failures) + 1))
    def generate(context: AssetExecutionContext) -> None:
        placement = placement_for_attempt(context, "cuda")
        placements.append(placement)
        if placement.device != "cpu" and failures:
            raise failures.pop(0)
    return generate


def test_gpu_oom_retries_with_half_the_batch_then_on_the_cpu():
    torch = pytest.importorskip("torch")
    placements: list[ModelPlacement] = []
    oom = [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
           RuntimeError("CUDA error: out of memory")]
    result = materialize([_gpu_step(oom, placements)], instance=DagsterInstance.ephemeral())
    assert result.success
    assert placements == [ModelPlacement("cuda", 1), ModelPlacement("cuda", 2), ModelPlacement("cpu", 1)]


def test_other_failures_retry_where_they_were():
    placements: list[ModelPlacement] = []
    result = materialize([_gpu_step([ConnectionResetError("model server went away")], placements)],
                         instance=DagsterInstance.ephemeral())
    assert result.success
    assert placements == [ModelPlacement("cuda", 1), ModelPlacement("cuda", 1)]


def test_extras_are_named_when_an_executor_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "dagster_k8s", None)  # as if the k8s extra were not installed
    with pytest.raises(ValueError, match=r"needs dagster-k8s: pip install -e '\.\[k8s\]'"):
        executor_named("k8s")

"""How the pipeline's steps execute, in one place: the pools that cap GPU and encode work, retry policies for
transient failures, Kubernetes resources and Celery queues per kind of step, run-retry tags, the executor a
deployment picks, and where a model step runs after the GPU ran out of memory.

Dagster-level settings only (nothing here imports the assets): the assets and jobs take their values from here.
docs/deployment.md explains how a deployment uses them."""

from __future__ import annotations

import importlib
import os
import re
from typing import TYPE_CHECKING, NamedTuple

from dagster import (Backoff, DagsterEventType, ExecutorDefinition, Jitter, RetryPolicy,
                     in_process_executor, multiprocess_executor)

if TYPE_CHECKING:
    from dagster._utils.error import SerializableErrorInfo

# Steps whose backend may run a model on the GPU: `dagster instance concurrency set gpu <GPUs>` keeps them from
# loading more models at once than the GPUs hold.
GPU_POOL = "gpu"
# Ladder encodes and packaging each keep several cores busy: `dagster instance concurrency set encode <N>` keeps
# a machine (or a cluster's encode nodes) from running more of them than it has cores for.
ENCODE_POOL = "encode"

# A model step fails transiently when the GPU is briefly short of memory or a CUDA call errors; a later attempt
# (after model_placement has moved it, see below) usually succeeds. Delays 10 s, 30 s (+-10 s of jitter, so
# steps that failed together do not retry together).
MODEL_RETRY_POLICY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
# Publishing to S3/MinIO: the client already retries single requests; this covers an outage of a minute or two
# (delays 5, 15, 35, 75 s +-5 s). Permanent errors (access denied, no such bucket) must raise
# Failure(..., allow_retries=False) so they fail at once.
OBJECT_STORE_RETRY_POLICY = RetryPolicy(max_retries=4, delay=5, backoff=Backoff.EXPONENTIAL,
                                        jitter=Jitter.PLUS_MINUS)

# Shot runs go to GPU nodes, which are often preemptible: a run whose worker or pod dies is retried from the
# failure (only the steps that had not finished) up to this many times, when the instance enables run retries.
SHOT_RUN_TAGS = {"dagster/max_retries": "3"}

K8S_CONFIG_TAG = "dagster-k8s/config"  # read by dagster-k8s's k8s_job_executor for each step's pod
CELERY_QUEUE_TAG = "dagster-celery/queue"  # the Celery queue a step is sent to (dagster_celery.tags)

# One GPU per model step; scheduled only on GPU nodes (their usual taint) and given host memory for the weights
# being loaded. Requests equal limits for the GPU, as Kubernetes requires of extended resources.
GPU_STEP_TAGS = {
    K8S_CONFIG_TAG: {
        "container_config": {"resources": {
            "requests": {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"},
            "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"},
        }},
        "pod_spec_config": {"tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        ]},
    },
    CELERY_QUEUE_TAG: "gpu",
}
# x264/x265/SVT-AV1 ladder encodes: several cores each, a few GB for the encoders' lookahead buffers.
ENCODE_STEP_TAGS = {
    K8S_CONFIG_TAG: {
        "container_config": {"resources": {
            "requests": {"cpu": "4", "memory": "4Gi"},
            "limits": {"cpu": "8", "memory": "8Gi"},
        }},
    },
    CELERY_QUEUE_TAG: "encode",
}

EXECUTOR_ENV = "MICRODRAMA_EXECUTOR"
EXECUTORS = ("multiprocess", "in_process", "k8s", "celery")
_EXECUTOR_EXTRAS = {"k8s": ("dagster_k8s", "k8s_job_executor"), "celery": ("dagster_celery", "celery_executor")}


def executor_named(name: str | None = None) -> ExecutorDefinition:
    """The executor launched runs use: ``name``, else MICRODRAMA_EXECUTOR, else ``multiprocess`` (steps of a run
    in parallel processes on one machine). ``k8s`` runs each step as a Kubernetes Job, ``celery`` sends each step
    to a Celery queue; they need the ``k8s`` / ``celery`` extras. Runs the CLI makes with execute_in_process
    always run in-process, whatever this says."""
    name = name or os.environ.get(EXECUTOR_ENV) or "multiprocess"
    if name == "multiprocess":
        return multiprocess_executor
    if name == "in_process":
        return in_process_executor
    if name not in _EXECUTOR_EXTRAS:
        raise ValueError(f"unknown executor {name!r} ({EXECUTOR_ENV}); choose one of {', '.join(EXECUTORS)}")
    module_name, attribute = _EXECUTOR_EXTRAS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ValueError(f"the {name} executor needs {module_name.replace('_', '-')}: "
                         f"pip install -e '.[{name}]'") from None
    return getattr(module, attribute)


# torch.OutOfMemoryError (torch.cuda.OutOfMemoryError) and the CUDA runtime's own allocation failures.
_GPU_OOM_MESSAGE = re.compile(r"(CUDA|CUBLAS|cuDNN|HIP)\b.*(out of memory|ALLOC_FAILED)", re.IGNORECASE)


def is_gpu_oom(error: SerializableErrorInfo | None) -> bool:
    """Whether a step's recorded error, or any error that caused it, is the GPU running out of memory."""
    while error is not None:
        if error.cls_name == "OutOfMemoryError" or _GPU_OOM_MESSAGE.search(error.message or ""):
            return True
        if error.cause is not None and is_gpu_oom(error.cause):
            return True
        error = error.context
    return False


class ModelPlacement(NamedTuple):
    """Where a model step's attempt runs: the device for its backend, and what to divide its batch size by."""

    device: str
    batch_divisor: int = 1

    def batch(self, size: int) -> int:
        return max(1, size // self.batch_divisor)


def model_placement(configured_device: str, gpu_oom_failures: int) -> ModelPlacement:
    """The configured device at full batch; after one out-of-memory failure the same device at half the batch;
    after more, the CPU (slow, but it finishes the episode)."""
    if gpu_oom_failures == 0:
        return ModelPlacement(configured_device)
    if gpu_oom_failures == 1 and configured_device != "cpu":
        return ModelPlacement(configured_device, batch_divisor=2)
    return ModelPlacement("cpu")


def earlier_gpu_oom_failures(context) -> int:
    """How many earlier attempts of the running step, in this run, failed because the GPU ran out of memory.
    Read from the instance's event log, so it holds when the retry runs in another process or pod."""
    if context.retry_number == 0:
        return 0
    step_key = context.get_step_execution_context().step.key
    records = context.instance.get_records_for_run(context.run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
    return sum(1 for record in records.records
               if record.event_log_entry.step_key == step_key
               and is_gpu_oom(record.event_log_entry.dagster_event.step_retry_data.error))


def placement_for_attempt(context, configured_device: str) -> ModelPlacement:
    """Where this attempt of a model step runs (see model_placement); logs when it moved."""
    placement = model_placement(configured_device, earlier_gpu_oom_failures(context))
    if placement != ModelPlacement(configured_device):
        context.log.warning(f"the GPU ran out of memory on an earlier attempt: running on {placement.device}"
                            f" with the batch divided by {placement.batch_divisor}")
    return placement

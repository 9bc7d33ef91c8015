"""Where steps run. Locally: the default multiprocess executor, tags ignored. On Kubernetes
(`FFR_EXECUTOR=k8s`, set on the user deployment; see infra/README.md): one pod per step, sized here.

- The run pod only orchestrates: `runK8sConfig` in infra/helm/values.yaml sizes it.
- Every step pod starts from :data:`STEP` (the executor's ``step_k8s_config``): CPU nodes.
- Embedding and CPU training steps carry :data:`CPU_HEAVY_STEP` in their op tags; the training
  steps carry :func:`training_step`, which follows the deployment's F2RVLM profile
  (``FFR_F2RVLM_PROFILE``): a GPU pod for a GPU profile, a CPU-heavy pod otherwise.
- The training steps share the Dagster pool :data:`TRAINING_POOL`; the instance's
  ``concurrency.pools.default_limit`` caps how many of them run at once, in every executor
  (infra/dagster/dagster.yaml for compose, ``additionalInstanceConfig`` in the Helm values).
"""

from typing import Any

from ffr_lib.f2rvlm.profiles import get_profile
from ffr_lib.settings import EXECUTOR, F2RVLM_PROFILE

K8S_CONFIG = "dagster-k8s/config"
TRAINING_POOL = "ffr-training"
NODE_POOL_LABEL = "ffr.io/pool"


def _pod(cpu: str, memory: str, limit: str, pool: str, gpus: int = 0) -> dict[str, Any]:
    """A step pod's ``dagster-k8s/config``: requests, a memory limit, the node pool."""
    requests = {"cpu": cpu, "memory": memory}
    limits = {"memory": limit}
    spec: dict[str, Any] = {"node_selector": {NODE_POOL_LABEL: pool}}
    if gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
        spec["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    return {
        "container_config": {"resources": {"requests": requests, "limits": limits}},
        "pod_spec_config": spec,
    }


#: Any step without op tags of its own (ingest, splits, segmentation, QMSum, evaluation set-up).
STEP = _pod("1", "2Gi", "4Gi", "cpu")
#: Embedding (fragment_index, evaluation) and CPU training (reader, FEM or F2RVLM on CPU).
CPU_HEAVY_STEP = {K8S_CONFIG: _pod("4", "8Gi", "12Gi", "cpu")}
#: Training on one GPU (FEM and F2RVLM under a GPU profile).
GPU_STEP = {K8S_CONFIG: _pod("4", "24Gi", "32Gi", "gpu", gpus=1)}


def needs_gpu(profile: str) -> bool:
    """Whether an F2RVLM profile trains on a GPU (device ``auto``) rather than the CPU."""
    return get_profile(profile).device != "cpu"


def training_step(profile: str | None = None) -> dict[str, Any]:
    """Op tags of a training step under ``profile`` (default: ``FFR_F2RVLM_PROFILE``, read when
    the definitions load): GPU pods for a GPU profile, CPU-heavy pods for a CPU one."""
    return GPU_STEP if needs_gpu(profile or F2RVLM_PROFILE.get()) else CPU_HEAVY_STEP


def check_profile_fits_step(profile: str) -> None:
    """On Kubernetes the step's pod was chosen by ``FFR_F2RVLM_PROFILE``; a run config naming a
    profile on the other side of the GPU line would hold a GPU it does not use, or train a GPU
    profile on a CPU node. Raises ValueError saying what to set instead."""
    if EXECUTOR.get() != "k8s":
        return
    deployed = F2RVLM_PROFILE.get()
    if needs_gpu(profile) != needs_gpu(deployed):
        where = "a GPU" if needs_gpu(deployed) else "a CPU"
        raise ValueError(
            f"profile {profile!r} does not fit this step: its pod is {where} pod, chosen by "
            f"FFR_F2RVLM_PROFILE={deployed!r}. Set FFR_F2RVLM_PROFILE={profile!r} on the user "
            "deployment and the run launcher (infra/helm/values.yaml), then redeploy"
        )


def executor():
    """`k8s_job_executor` with :data:`STEP` for every step when FFR_EXECUTOR=k8s (dagster-k8s
    comes with the `k8s` extra), else None (Dagster's default)."""
    choice = EXECUTOR.get()
    if choice in (None, "default", "multiprocess"):
        return None
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor  # noqa: PLC0415 - the `k8s` extra

        return k8s_job_executor.configured({"step_k8s_config": STEP}, name="ffr_k8s_executor")
    raise ValueError(f"FFR_EXECUTOR={choice!r}: use 'k8s' or leave it unset")

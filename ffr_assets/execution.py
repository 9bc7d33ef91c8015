"""Where steps run. Locally: the default multiprocess executor, tags ignored. On Kubernetes
(`FFR_EXECUTOR=k8s`, set on the user deployment; see infra/README.md): one pod per step, and the
training steps ask for a GPU node through their op tags."""

from ffr_lib.settings import EXECUTOR

GPU_STEP = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {
                "requests": {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"},
                "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"},
            }
        },
        "pod_spec_config": {
            "node_selector": {"ffr.io/pool": "gpu"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        },
    },
    # Capped by the run queue's tagConcurrencyLimits: GPUs are the scarce resource.
    "ffr/stage": "training",
}


def executor():
    """`k8s_job_executor` when FFR_EXECUTOR=k8s (dagster-k8s is installed in the image only),
    else None (Dagster's default)."""
    choice = EXECUTOR.get()
    if choice in (None, "default", "multiprocess"):
        return None
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor  # noqa: PLC0415 - only in the cluster image

        return k8s_job_executor
    raise ValueError(f"FFR_EXECUTOR={choice!r}: use 'k8s' or leave it unset")

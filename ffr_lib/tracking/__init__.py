"""MLflow tracking: the one place that points MLflow at the configured store and opens runs."""

from ffr_lib.tracking.mlflow_runs import (
    configure_mlflow,
    register_model_version,
    start_run,
)

__all__ = ["configure_mlflow", "register_model_version", "start_run"]

"""Open MLflow runs against the configured tracking store and register model versions.

MLflow 3.17 refuses a plain file store, so the local default is a sqlite database under FFR_HOME
(``Settings.mlflow_tracking_uri``); production points MLFLOW_TRACKING_URI at a server.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ffr_lib.settings import get_settings

# MLflow prints a banner about its sqlite migrations and git on every run; keep logs readable.
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def configure_mlflow(tracking_uri: str | None = None) -> str:
    """Point MLflow at the tracking store (argument, MLFLOW_TRACKING_URI, or the local sqlite
    default) and return the URI in use. Local artifacts go under FFR_HOME/mlartifacts."""
    import mlflow

    settings = get_settings()
    uri = tracking_uri or settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _experiment_id(name: str) -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_root = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        artifact_root = (get_settings().home / "mlartifacts" / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=artifact_root)


@contextlib.contextmanager
def start_run(
    experiment: str,
    run_name: str | None = None,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    tracking_uri: str | None = None,
) -> Iterator[Any]:
    """Context manager yielding an active MLflow run in ``experiment`` with params logged."""
    import mlflow

    configure_mlflow(tracking_uri)
    with mlflow.start_run(
        experiment_id=_experiment_id(experiment), run_name=run_name, tags=tags
    ) as run:
        if params:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        yield run


def register_model_version(
    run_id: str, artifact_path: str, model_name: str, alias: str | None = None
) -> str:
    """Register ``runs:/run_id/artifact_path`` as a new version of ``model_name``; optionally
    point ``alias`` (e.g. ``champion``) at it. Returns the version number as a string."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    # Adapters and sentence-transformers folders are plain artifacts, not MLflow "logged
    # models", so the version is created from the artifact URI directly.
    client = MlflowClient()
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name)
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    version = client.create_model_version(model_name, source=source, run_id=run_id)
    if alias:
        client.set_registered_model_alias(model_name, alias, version.version)
    return str(version.version)

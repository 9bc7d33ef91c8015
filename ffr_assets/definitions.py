"""The Dagster code location: `dagster dev -m ffr_assets.definitions`."""

from __future__ import annotations

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from ffr_assets.assets import evaluation, f2rvlm, fem, fragments, inbox, mldr, qmsum, raw, reader
from ffr_assets.execution import executor
from ffr_assets.resources import DatabaseResource, MlflowResource
from ffr_assets.sensors import inbox_sensor, index_batch_job, nightly_reindex, reindex_job

_asset_modules = [raw, qmsum, inbox, mldr, fragments, fem, reader, f2rvlm, evaluation]

defs = Definitions(
    assets=load_assets_from_modules(_asset_modules),
    asset_checks=load_asset_checks_from_modules(_asset_modules),
    jobs=[index_batch_job, reindex_job],
    sensors=[inbox_sensor],
    schedules=[nightly_reindex],
    resources={"database": DatabaseResource(), "mlflow": MlflowResource()},
    executor=executor(),
)

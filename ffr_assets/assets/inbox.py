"""`inbox_dialogues`: store one accepted inbox file (a dialogue batch partition).

No `from __future__ import annotations` in asset modules: Dagster resolves Config types at runtime.
"""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from ffr_assets.partitions import dialogue_batches
from ffr_assets.resources import DatabaseResource


@asset(
    group_name="data",
    partitions_def=dialogue_batches,
    description="Dialogues of one inbox file accepted by the `inbox_sensor`, tagged with their "
    "batch key and upserted into Postgres in one transaction.",
    owners=["team:ffr"],
    kinds={"postgres"},
)
def inbox_dialogues(
    context: AssetExecutionContext, database: DatabaseResource
) -> MaterializeResult:
    from ffr_lib.inbox import ingest_batch

    summary = ingest_batch(database.resolved_url(), context.partition_key)
    context.log.info(f"{context.partition_key}: {summary}")
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(summary.pop("path")),
            **{k: v for k, v in summary.items() if isinstance(v, int)},
        }
    )

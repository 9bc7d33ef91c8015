"""`fragments`: cut each dialogue batch (dynamic partition) into minimal semantic fragments.

No `from __future__ import annotations` in asset modules: Dagster resolves Config types at runtime.
"""

from typing import Literal

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from ffr_assets.config import from_library
from ffr_assets.partitions import dialogue_batches
from ffr_assets.resources import DatabaseResource
from ffr_lib.segment.stage import FragmentStageConfig, cut_batch


class FragmentsConfig(Config):
    """Defaults are FragmentStageConfig's."""

    segmenter: Literal["texttiling", "windows"] = from_library(FragmentStageConfig, "segmenter")
    encoder: str = from_library(FragmentStageConfig, "encoder")
    evaluate_on: int = from_library(FragmentStageConfig, "evaluate_on")


@asset(
    group_name="retrieval",
    deps=["mldr_splits", "inbox_dialogues"],
    partitions_def=dialogue_batches,
    description="Minimal semantic fragments of one dialogue batch (each utterance in exactly one "
    "fragment, images with their utterance), written to $FFR_HOME/fragments/<batch>.jsonl. "
    "Metadata compares the segmenter with fixed windows (Pk, WindowDiff).",
    owners=["team:ffr"],
    kinds={"python"},
)
def fragments(
    context: AssetExecutionContext, config: FragmentsConfig, database: DatabaseResource
) -> MaterializeResult:
    summary = cut_batch(
        database.resolved_url(),
        context.partition_key,
        FragmentStageConfig(
            segmenter=config.segmenter, encoder=config.encoder, evaluate_on=config.evaluate_on
        ),
    )
    context.log.info(
        f"{summary['batch']}: {summary['dialogues']} dialogues -> {summary['fragments']} fragments"
    )
    metadata = {
        "path": MetadataValue.path(summary["path"]),
        "dialogues": summary["dialogues"],
        "fragments": summary["fragments"],
        "utterances_per_fragment": summary["utterances_per_fragment"],
    }
    for name, scores in summary["segmentation"].items():
        metadata[f"pk/{name}"] = scores["pk"]
        metadata[f"window_diff/{name}"] = scores["window_diff"]
    return MaterializeResult(metadata=metadata)
